// cancel.hpp: the user's request to stop a run (Ctrl-C, SIGTERM).
//
// The signal handler only sets a flag (all a handler may safely do, see
// signal-safety(7)); long loops poll it through throw_if_cancelled(), which
// Progress::report calls, so the exception unwinds through the runner and
// the writer's guard aborts the output and removes its temporaries.
#pragma once

namespace xquant {

// SIGINT and SIGTERM set the flag. The handler is one-shot (SA_RESETHAND):
// a second Ctrl-C kills the process at once.
void install_cancel_handlers();

// Set by the handlers (or by request_cancel); never cleared.
bool cancel_requested() noexcept;
// The signal that asked to stop (0 when none or request_cancel was called).
int cancel_signal() noexcept;
void request_cancel() noexcept;

// Throws Error(XQ_ERR_CANCELLED, "interrupted") once a stop was requested.
void throw_if_cancelled();

}  // namespace xquant
