// test_error.cpp: the one exception -> status mapping (sdk/error.hpp) and the
// boundaries built on it: the SDK's guard, the C API, xq_status_string.
#include "fake_host.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

using xquant::sdk::call_with_status;
using xquant::sdk::Error;

namespace {

struct Recorded {
  xq_status status = XQ_OK;
  std::string message;
  int calls = 0;
};

template <class F>
Recorded run(F&& body) {
  Recorded r;
  xq_status s = call_with_status(
      [&](xq_status st, const char* m) {
        r.status = st;
        r.message = m;
        ++r.calls;
        return st;
      },
      body);
  EXPECT_EQ(s, r.calls ? r.status : XQ_OK);
  return r;
}

}  // namespace

TEST(SdkError, ReturnsOkAndRecordsNothingWhenTheBodyReturns) {
  Recorded r = run([] {});
  EXPECT_EQ(r.calls, 0);
}

TEST(SdkError, XquantErrorKeepsItsStatusAndMessage) {
  Recorded r = run([] { throw Error(XQ_ERR_MALFORMED, "bad header at byte 8"); });
  EXPECT_EQ(r.status, XQ_ERR_MALFORMED);
  EXPECT_EQ(r.message, "bad header at byte 8");
}

TEST(SdkError, BadAllocIsOutOfMemory) {
  Recorded r = run([] { throw std::bad_alloc(); });
  EXPECT_EQ(r.status, XQ_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(r.message, "out of memory");
}

TEST(SdkError, ALengthErrorFromTheStandardLibraryIsInternalWithItsMessage) {
  Recorded r = run([] { std::vector<int>().at(3); });
  EXPECT_EQ(r.status, XQ_ERR_INTERNAL);
  EXPECT_FALSE(r.message.empty());
}

TEST(SdkError, AForeignThrowIsInternal) {
  Recorded r = run([] { throw 42; });
  EXPECT_EQ(r.status, XQ_ERR_INTERNAL);
  EXPECT_EQ(r.message, "unknown exception");
}

TEST(SdkError, ARecorderThatThrowsStillYieldsTheStatus) {
  xq_status s = call_with_status([](xq_status, const char*) -> xq_status { throw std::bad_alloc(); },
                                 [] { throw Error(XQ_ERR_IO, "disk full"); });
  EXPECT_EQ(s, XQ_ERR_IO);
}

TEST(SdkError, GuardRecordsThroughTheHostTable) {
  FakeHost fake;
  xquant::sdk::Host host(&fake.api);
  EXPECT_EQ(xquant::sdk::guard(host, [] { throw std::bad_alloc(); }), XQ_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(fake.last_status, XQ_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(xquant::sdk::guard(host, [] { throw Error(XQ_ERR_NOT_FOUND, "no tensor 'x'"); }), XQ_ERR_NOT_FOUND);
  EXPECT_EQ(fake.last_message, "no tensor 'x'");
}

TEST(CApiStatusString, NamesEveryStatus) {
  EXPECT_STREQ(xq_status_string(XQ_OK), "ok");
  EXPECT_STREQ(xq_status_string(XQ_ERR_INVALID_ARGUMENT), "invalid argument");
  EXPECT_STREQ(xq_status_string(XQ_ERR_NOT_FOUND), "not found");
  EXPECT_STREQ(xq_status_string(XQ_ERR_MALFORMED), "malformed input");
  EXPECT_STREQ(xq_status_string(XQ_ERR_OUT_OF_MEMORY), "out of memory");
  EXPECT_STREQ(xq_status_string(XQ_ERR_INTERNAL), "internal error");
  for (int s = XQ_OK; s <= XQ_ERR_INTERNAL; ++s)
    EXPECT_STRNE(xq_status_string(static_cast<xq_status>(s)), "unknown status") << s;
}

TEST(CApiStatusString, AnswersAValueOutsideTheEnum) {
  EXPECT_STREQ(xq_status_string(static_cast<xq_status>(999)), "unknown status");
}

TEST(CApiBoundary, AFailingCallReturnsItsStatusAndMessage) {
  EXPECT_EQ(xq_runtime_load_plugins(nullptr, "/nowhere"), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(xq_last_error(), "runtime handle is NULL");
}
