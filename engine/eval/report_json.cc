#include "engine/eval/report_json.h"

#include <google/protobuf/util/json_util.h>

#include "engine/common/utf8.h"

namespace carewatch::eval {

Status ParseReportJson(std::string_view json, v1::ContentReport* report) {
  if (json.size() > kMaxReportJsonBytes) {
    return Status::InvalidArgument("report is larger than " +
                                   std::to_string(kMaxReportJsonBytes >> 20) + " MiB");
  }
  size_t bad = FindInvalidUtf8(json);
  if (bad != std::string_view::npos) {
    return Status::InvalidArgument("report is not valid UTF-8 (at byte " + std::to_string(bad) +
                                   ")");
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  report->Clear();
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), report, options);
  if (!status.ok()) {
    return Status::InvalidArgument("bad report JSON: " + std::string(status.message()));
  }
  return Status::Ok();
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) return "{}";
  return out;
}

}  // namespace carewatch::eval
