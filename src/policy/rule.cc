// placeholder, replaced by the policy implementation
