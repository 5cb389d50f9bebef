// The common component is mostly header-only (Result, UniqueFd, byte helpers); this file keeps
// the static library non-empty and is where shared non-inline helpers go.
#include "common/result.h"
