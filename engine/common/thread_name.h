#ifndef CAREWATCH_ENGINE_COMMON_THREAD_NAME_H_
#define CAREWATCH_ENGINE_COMMON_THREAD_NAME_H_

#include <pthread.h>

namespace carewatch {

// Names the calling thread as `top -H`, `ps -L`, perf and gdb show it (the
// kernel keeps the first 15 bytes). docs/operations.md lists the names.
inline void NameThisThread(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace carewatch

#endif  // CAREWATCH_ENGINE_COMMON_THREAD_NAME_H_
