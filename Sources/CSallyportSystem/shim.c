#define _GNU_SOURCE
#include "CSallyportSystem.h"
#include <unistd.h>  // first glibc header: defines __GLIBC__ for the test below

#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>
#include <sys/mman.h>
int csallyport_set_malloc_arena_max(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
int csallyport_memory_file(const char *name) { return memfd_create(name, MFD_CLOEXEC); }
#else
int csallyport_set_malloc_arena_max(int arenas) { (void)arenas; return 0; }
int csallyport_memory_file(const char *name) { (void)name; return -1; }
#endif
