#ifndef CAREWATCH_ENGINE_COMMON_FILES_H_
#define CAREWATCH_ENGINE_COMMON_FILES_H_

// Files written so that a crash leaves the old one or the new one, never
// half of either: key files, a monitor's state, ledger backups.

#include <sys/types.h>

#include <string>
#include <string_view>

#include "engine/common/status.h"

namespace carewatch {

// `content` into `path`: written whole to PATH.tmp (created anew with
// `mode`, whatever the umask; an earlier PATH.tmp file is replaced), synced,
// renamed over PATH, and its directory synced. Errors name the file and the
// system's reason.
Status WriteFileDurably(const std::string& path, std::string_view content, mode_t mode);

// fsync of a file, and of a directory (after a rename into it).
Status SyncFile(const std::string& path);
Status SyncDirectory(const std::string& dir);

}  // namespace carewatch

#endif  // CAREWATCH_ENGINE_COMMON_FILES_H_
