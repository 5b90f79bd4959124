#ifndef CAREWATCH_ENGINE_SERVER_SERVICES_H_
#define CAREWATCH_ENGINE_SERVER_SERVICES_H_

// Internal to carewatchd: the gRPC services, one file each. Every handler
// goes through Serve() or ServeStream() (engine/server/request.h).

#include <grpcpp/grpcpp.h>

#include <memory>

#include "engine/server/state.h"

namespace carewatch::server {

std::unique_ptr<grpc::Service> NewModerationService(Server::State* s);
std::unique_ptr<grpc::Service> NewAuditService(Server::State* s);
std::unique_ptr<grpc::Service> NewRulesService(Server::State* s);
std::unique_ptr<grpc::Service> NewNoopService(Server::State* s);
std::unique_ptr<grpc::Service> NewSignalsService(Server::State* s);

}  // namespace carewatch::server

#endif  // CAREWATCH_ENGINE_SERVER_SERVICES_H_
