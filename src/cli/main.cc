#include <cstdio>
int main() { std::puts("netfence"); return 0; }
