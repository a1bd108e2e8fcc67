// fake_host.hpp: a host API table for testing SDK adapters without the
// runtime: counts allocations and frees and keeps the last recorded error.
#pragma once

#include <xquant/xq_abi.h>

#include <cstdlib>
#include <string>

struct FakeHost {
  int allocs = 0;
  int frees = 0;
  xq_status last_status = XQ_OK;
  std::string last_message;
  xq_host_api api{};

  FakeHost() {
    api.struct_size = sizeof(api);
    api.abi_version = XQ_ABI_VERSION;
    api.ctx = this;
    api.log = [](void*, xq_log_level, const char*) {};
    api.alloc = [](void* ctx, size_t n) -> void* {
      ++self(ctx).allocs;
      return std::malloc(n ? n : 1);
    };
    api.free = [](void* ctx, void* p) {
      ++self(ctx).frees;
      std::free(p);
    };
    api.set_error = [](void* ctx, xq_status s, const char* m) {
      self(ctx).last_status = s;
      self(ctx).last_message = m ? m : "";
      return s;
    };
    api.progress = [](void*, const char*, uint64_t, uint64_t) { return XQ_OK; };
    api.num_threads = [](void*) -> uint32_t { return 1; };
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

 private:
  static FakeHost& self(void* ctx) { return *static_cast<FakeHost*>(ctx); }
};
