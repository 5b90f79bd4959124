// libFuzzer target: arbitrary bytes as the message of any carewatchd RPC,
// from a caller of any role (or none), sent over loopback to a real
// carewatchd started in this process with the shipped rules and an SQLite
// ledger. gRPC decodes the bytes; the request path and the handlers do the
// rest. Byte 0 picks the method, byte 1 the caller; the rest is the message.
// A crash, a sanitizer report or a hang in any server thread fails the run.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "carewatch/v1/service.grpc.pb.h"
#include "engine/server/auth.h"
#include "engine/server/request.h"
#include "engine/server/server.h"

namespace {

namespace fs = std::filesystem;
using namespace carewatch;

struct Fixture {
  std::unique_ptr<server::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
  std::vector<std::string> paths;   // the unary carewatch methods
  std::vector<std::string> tokens;  // "", a bad one, then one per role
};

Fixture* Start() {
  auto* f = new Fixture;
  std::string dir =
      fs::temp_directory_path().string() + "/cw-fuzz-grpc-" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream tokens(dir + "/tokens.yaml");
  tokens << "tokens:\n";
  f->tokens = {"", "not-a-token"};
  auto add = [&](const std::string& name, server::Role role, const std::string& service) {
    std::string t = server::NewToken();
    tokens << server::TokenLine(t, name, role, service) << "\n";
    f->tokens.push_back(t);
  };
  add("platform", server::Role::kPlatform, "svc-a");
  add("regulator", server::Role::kRegulator, "");
  add("author", server::Role::kRuleAuthor, "");
  add("admin", server::Role::kAdmin, "");
  tokens.close();
  server::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics = "";
  config.rules = {CAREWATCH_SOURCE_DIR "/rules"};
  config.ledger = "sqlite://" + dir + "/ledger.db";
  config.tokens = dir + "/tokens.yaml";
  config.cache_dir = dir + "/cache";
  config.max_field_bytes = 65536;
  config.compile_timeout_ms = 2000;
  f->server = std::make_unique<server::Server>(config);
  Status s = f->server->Start();
  if (!s.ok()) {
    std::cerr << "fuzz_grpc_requests: cannot start carewatchd: " << s.message() << "\n";
    std::abort();
  }
  f->channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(f->server->grpc_port()),
                                   grpc::InsecureChannelCredentials());
  f->stub = std::make_unique<grpc::GenericStub>(f->channel);
  for (const auto& p : server::MethodPolicies()) {
    std::string path(p.path);
    // Streams are driven below; the benchmark service is off.
    if (path.rfind("/carewatch.v1.", 0) != 0 || path.find("Noop") != std::string::npos ||
        path == "/carewatch.v1.Signals/Subscribe")
      continue;
    f->paths.push_back(path);
  }
  return f;
}

Fixture& Shared() {
  static Fixture* f = Start();
  return *f;
}

grpc::Status Unary(Fixture& f, const std::string& path, const std::string& token,
                   const std::string& message) {
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice slice(message);
  grpc::ByteBuffer req(&slice, 1), resp;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  grpc::StubOptions options;
  f.stub->UnaryCall(&ctx, path, options, &req, &resp, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    result = s;
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  return result;
}

// EvaluateStream: the message split into up to four requests.
void Stream(Fixture& f, const std::string& token, const std::string& message) {
  auto stub = v1::Moderation::NewStub(f.channel);
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto stream = stub->EvaluateStream(&ctx);
  size_t part = message.size() / 4 + 1;
  for (size_t at = 0; at < message.size(); at += part) {
    v1::EvaluateRequest req;
    if (!req.ParseFromString(message.substr(at, part))) continue;
    if (!stream->Write(req)) break;
  }
  stream->WritesDone();
  v1::EvaluateResponse resp;
  while (stream->Read(&resp)) {
  }
  stream->Finish().ok();
}

// Signals.Subscribe: the message as the request, read for a moment (the
// stream stays open until the client goes away).
void Subscribe(Fixture& f, const std::string& token, const std::string& message) {
  auto stub = v1::Signals::NewStub(f.channel);
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  v1::SubscribeAlertsRequest req;
  if (!req.ParseFromString(message)) return;
  auto reader = stub->Subscribe(&ctx, req);
  v1::LinkageAlert alert;
  while (reader->Read(&alert)) {
  }
  reader->Finish().ok();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  Fixture& f = Shared();
  const std::string& token = f.tokens[data[1] % f.tokens.size()];
  std::string message(reinterpret_cast<const char*>(data + 2), size - 2);
  size_t pick = data[0] % (f.paths.size() + 2);
  if (pick == f.paths.size()) {
    Stream(f, token, message);
    return 0;
  }
  if (pick == f.paths.size() + 1) {
    Subscribe(f, token, message);
    return 0;
  }
  grpc::Status st = Unary(f, f.paths[pick], token, message);
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
      st.error_message().find("connect") != std::string::npos) {
    // The server in this process stopped answering: a bug, not an input.
    std::cerr << "carewatchd stopped answering: " << st.error_message() << "\n";
    std::abort();
  }
  return 0;
}
