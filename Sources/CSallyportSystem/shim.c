#include "CSallyportSystem.h"

#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>
int csallyport_set_malloc_arena_max(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
#else
int csallyport_set_malloc_arena_max(int arenas) { (void)arenas; return 0; }
#endif
