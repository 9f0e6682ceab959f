// os/result.cpp: Error::message().
#include "os/result.hpp"

#include <string.h>

namespace pipepool::os {

std::string Error::message() const {
  // strerrordesc_np: the English description, thread-safe and independent of the locale.
  const char* description = ::strerrordesc_np(code);
  std::string text = operation;
  text += ": ";
  text += description != nullptr ? description : ("errno " + std::to_string(code)).c_str();
  return text;
}

}  // namespace pipepool::os
