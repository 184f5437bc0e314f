// Everything lives in include/ckvm.h as static inline functions; this file gives SwiftPM a C source.
#include "ckvm.h"
