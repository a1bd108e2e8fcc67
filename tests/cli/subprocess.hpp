// subprocess.hpp: runs the built xquant binary as a child process and
// collects its exit status, stdout and stderr, for tests of what a user of
// the command line sees. Header-only; POSIX (fork/exec, pipes, poll).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace xquant::test {

struct ProcessResult {
  int exit_code = -1;  // WEXITSTATUS, or -1 when killed by a signal
  int signal = 0;      // the signal that killed it, 0 if it exited
  std::string out, err;
};

// A running child with stdout and stderr on pipes (stdin is /dev/null).
class Subprocess {
 public:
  explicit Subprocess(const std::vector<std::string>& argv) {
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      ::dup2(out_pipe[1], 1);
      ::dup2(err_pipe[1], 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    out_fd_ = out_pipe[0];
    err_fd_ = err_pipe[0];
  }
  ~Subprocess() {
    if (pid_ > 0 && !waited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
    if (err_fd_ >= 0) ::close(err_fd_);
  }
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& err() const { return result_.err; }

  // Reads output until `done(stderr so far)` holds or both pipes close.
  // Returns whether `done` held.
  bool read_until(const std::function<bool(const std::string&)>& done) {
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      if (done && done(result_.err)) return true;
      pollfd fds[2];
      int n = 0;
      if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
      if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
      if (::poll(fds, static_cast<nfds_t>(n), -1) < 0) continue;
      for (int i = 0; i < n; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
        bool is_out = fds[i].fd == out_fd_;
        if (got > 0) {
          (is_out ? result_.out : result_.err).append(buf, static_cast<size_t>(got));
        } else {
          ::close(fds[i].fd);
          (is_out ? out_fd_ : err_fd_) = -1;
        }
      }
    }
    return done && done(result_.err);
  }

  ProcessResult wait() {
    read_until(nullptr);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    waited_ = true;
    if (WIFEXITED(status)) result_.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) result_.signal = WTERMSIG(status);
    return result_;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  bool waited_ = false;
  ProcessResult result_;
};

// Runs `argv` to completion.
inline ProcessResult run_process(const std::vector<std::string>& argv) {
  Subprocess p(argv);
  return p.wait();
}

#ifdef XQUANT_CLI
// The built `xquant` command (XQUANT_CLI, set by the test's CMake target) run
// with `args`.
inline ProcessResult run_xquant(std::vector<std::string> args) {
  args.insert(args.begin(), XQUANT_CLI);
  return run_process(args);
}
#endif

}  // namespace xquant::test
