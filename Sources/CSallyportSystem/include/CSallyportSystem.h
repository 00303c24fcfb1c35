#ifndef CSALLYPORT_SYSTEM_H
#define CSALLYPORT_SYSTEM_H

/// Caps glibc's malloc arenas (M_ARENA_MAX). Returns 1 on success, 0 where unsupported.
int csallyport_set_malloc_arena_max(int arenas);

/// An anonymous in-memory file (Linux memfd, close-on-exec); -1 where unsupported.
int csallyport_memory_file(const char *name);

#endif
