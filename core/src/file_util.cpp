#include "pefm/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>

namespace pefm {

namespace {

// A writer holds an exclusive flock() on its temporary file from creation to rename, so a
// temporary file that is unlocked and has not been touched for a while was left by a writer
// that died (SIGKILL, power loss). The age check covers the microseconds between mkostemp()
// and flock() of a live writer.
constexpr int kStaleTempSeconds = 10;

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

// Owns a file descriptor: closed on every path out, exceptions included.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

std::string read_bounded_file(const std::string& path, const std::string& kind, uint64_t max_bytes) {
  // Non-blocking, so that opening a FIFO without a writer does not wait forever.
  const UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  const int fd = file.get();
  if (fd < 0) throw std::runtime_error("cannot open " + kind + " '" + path + "': " + std::strerror(errno));
  struct stat st {};
  std::string bytes;
  const auto fail = [&](const std::string& why) { throw std::runtime_error(kind + " '" + path + "' " + why); };
  if (::fstat(fd, &st) != 0) fail(std::string("cannot be examined: ") + std::strerror(errno));
  // A device or FIFO (model=/dev/zero) would be read forever.
  if (S_ISDIR(st.st_mode)) fail("is a folder, not a file");
  if (!S_ISREG(st.st_mode)) fail("is not a regular file");
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    fail("is " + std::to_string(st.st_size) + " bytes; " + kind + "s are at most " + std::to_string(max_bytes) +
         " bytes");
  }
  bytes.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::string("cannot be read: ") + std::strerror(errno));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);  // shrank while being read: the checks that follow see what is there
  return bytes;
}

std::string file_identity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return "";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

int remove_stale_temp_files(const std::string& path) {
  const std::string dir = parent_dir(path);
  const auto slash = path.find_last_of('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp-";
  const std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return 0;
  int removed = 0;
  const time_t now = ::time(nullptr);
  while (const dirent* e = ::readdir(d.get())) {
    const std::string name = e->d_name;
    // mkstemp's suffix: exactly six characters after the prefix.
    if (name.size() != prefix.size() + 6 || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string full = dir + "/" + name;
    const UniqueFd file(::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (file.get() < 0) continue;
    struct stat st {};
    if (::fstat(file.get(), &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime >= kStaleTempSeconds &&
        ::flock(file.get(), LOCK_EX | LOCK_NB) == 0 && ::unlink(full.c_str()) == 0) {
      ++removed;
    }
  }
  return removed;
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string dir = parent_dir(path);
  remove_stale_temp_files(path);
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error("cannot create a temporary file next to '" + path + "': " +
                             std::strerror(errno));
  }
  ::flock(fd, LOCK_EX);  // marks the file as in use for remove_stale_temp_files()
  const auto fail = [&](const char* step) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error(std::string("cannot write '") + path + "' (" + step + "): " +
                             std::strerror(err));
  };
  size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write");
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd, 0644) != 0) fail("chmod");
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write '" + path + "' (close): " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot rename temporary file to '" + path + "': " + std::strerror(err));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);  // make the rename itself durable
    ::close(dfd);
  }
}

}  // namespace pefm
