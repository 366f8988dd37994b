// The echo client in C++: hydra.h is C++-compatible (extern "C"); a small
// RAII layer turns statuses into exceptions and owned strings into
// std::string. Links the static library (libhydra_ffi.a).
//
//   HYDRA_REDIS_URL=redis://127.0.0.1:6379/15 build/echo_client_cpp c-echo

#include <cstdint>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "hydra.h"

namespace hydra_cpp {

// A failed call: the status and the library's message.
class Error : public std::runtime_error {
   public:
    Error(int32_t status, const std::string &message)
        : std::runtime_error(std::string(hydra_status_name(status)) + ": " + message), status_(status) {}
    int32_t status() const { return status_; }

   private:
    int32_t status_;
};

inline void check(int32_t status) {
    if (status != HYDRA_OK) {
        throw Error(status, hydra_last_error_message());
    }
}

// Takes ownership of a string the library returned.
inline std::string take(char *text) {
    std::unique_ptr<char, decltype(&hydra_string_free)> owned(text, hydra_string_free);
    return owned ? std::string(owned.get()) : std::string();
}

class Hydra {
   public:
    explicit Hydra(const std::string &service_name) : handle_(nullptr, hydra_free) {
        hydra *h = nullptr;
        check(hydra_new_with_name(service_name.c_str(), &h));
        handle_.reset(h);
    }

    std::string register_service() {
        char *info = nullptr;
        check(hydra_register_service(handle_.get(), &info));
        return take(info);
    }

    std::string presence(const std::string &service) {
        char *json = nullptr;
        check(hydra_get_service_presence(handle_.get(), service.c_str(), &json));
        return take(json);
    }

    std::string request(const std::string &message_json, uint64_t timeout_ms) {
        char *reply = nullptr;
        check(hydra_request(handle_.get(), message_json.c_str(), timeout_ms, &reply));
        return take(reply);
    }

    static std::string get(const std::string &json, const std::string &pointer) {
        char *value = nullptr;
        check(hydra_json_get(json.c_str(), pointer.c_str(), &value));
        return take(value);
    }

   private:
    std::unique_ptr<hydra, decltype(&hydra_free)> handle_;
};

}  // namespace hydra_cpp

int main(int argc, char **argv) {
    const std::string service = argc > 1 ? argv[1] : "c-echo";
    try {
        hydra_cpp::Hydra client("cpp-echo-client");
        std::cout << "registered " << client.register_service() << "\n";
        std::cout << "instances of " << service << ": " << client.presence(service) << "\n";
        std::string reply = client.request(
            "{\"to\": \"" + service + ":/\", \"body\": {\"greeting\": \"hello from C++\"}}", 5000);
        std::cout << "echo: " << hydra_cpp::Hydra::get(reply, "/body/echo") << "\n";
        try {
            client.request("{\"to\": \"nobody-home:/\", \"body\": {}}", 100);
        } catch (const hydra_cpp::Error &e) {
            if (e.status() != HYDRA_SERVICE_UNAVAILABLE) {
                throw;
            }
            std::cout << "as expected: " << e.what() << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
