#ifndef CAREWATCH_ENGINE_EVAL_REPORT_JSON_H_
#define CAREWATCH_ENGINE_EVAL_REPORT_JSON_H_

#include <string>
#include <string_view>

#include "carewatch/v1/report.pb.h"
#include "engine/common/status.h"

namespace carewatch::eval {

// Largest JSON document accepted for one report.
inline constexpr size_t kMaxReportJsonBytes = 32u << 20;

// Parses one ContentReport from the protobuf JSON mapping (field names in
// lowerCamelCase or as in the .proto). Unknown fields, wrong types, invalid
// UTF-8 and oversized input are InvalidArgument errors naming the problem.
Status ParseReportJson(std::string_view json, v1::ContentReport* report);

// One-line JSON (protobuf mapping, .proto field names) of any message.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace carewatch::eval

#endif  // CAREWATCH_ENGINE_EVAL_REPORT_JSON_H_
