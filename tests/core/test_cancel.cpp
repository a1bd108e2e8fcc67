// test_cancel.cpp: a stop request (Ctrl-C's flag) surfaces as
// Error(XQ_ERR_CANCELLED) at the next progress report, even when progress is
// not shown (-q). The flag is process-wide and never cleared, so each case
// runs in a child process (a gtest death test).
#include "core/cancel.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>

using namespace xquant;

namespace {

// Exit 0 when report() threw the cancellation, 1 for another error, 2 when it returned.
[[noreturn]] void report_and_exit() {
  try {
    Progress::report("calibration", 1, 5, "layers");
  } catch (const Error& e) {
    std::_Exit(e.status() == XQ_ERR_CANCELLED ? 0 : 1);
  }
  std::_Exit(2);
}

}  // namespace

TEST(CancelDeathTest, ProgressReportsKeepGoingUntilAStopIsRequested) {
  EXPECT_EXIT(
      {
        set_log_level(XQ_LOG_ERROR);
        Progress::report("calibration", 1, 5, "layers");
        std::_Exit(cancel_requested() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(CancelDeathTest, SigintMakesTheNextReportThrowCancelledEvenWhenQuiet) {
  EXPECT_EXIT(
      {
        set_log_level(XQ_LOG_ERROR);  // -q: nothing drawn, still checked
        install_cancel_handlers();
        std::raise(SIGINT);
        if (!cancel_requested() || cancel_signal() != SIGINT) std::_Exit(3);
        report_and_exit();
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(CancelDeathTest, ASecondSigintKillsAtOnce) {
  EXPECT_EXIT(
      {
        install_cancel_handlers();
        std::raise(SIGINT);  // handled: sets the flag, restores the default action
        std::raise(SIGINT);  // default action: terminate
        std::_Exit(0);
      },
      ::testing::KilledBySignal(SIGINT), "");
}
