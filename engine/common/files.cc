#include "engine/common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace carewatch {
namespace {

Status SyncOpened(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return Status::Unavailable("cannot open " + path + ": " + std::strerror(errno));
  const bool synced = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  return synced ? Status::Ok()
                : Status::Unavailable("cannot sync " + path + ": " + std::strerror(err));
}

}  // namespace

Status SyncFile(const std::string& path) { return SyncOpened(path, O_RDONLY); }

Status SyncDirectory(const std::string& dir) {
  return SyncOpened(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

Status WriteFileDurably(const std::string& path, std::string_view content, mode_t mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // created anew below, so with `mode`
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Status::Unavailable("cannot write " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::Unavailable("cannot write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::Unavailable("cannot sync " + tmp + ": " + std::strerror(err));
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::Unavailable("cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
  return SyncDirectory(std::filesystem::path(path).parent_path().string());
}

}  // namespace carewatch
