// Hands the Go functions exported in hydra.go to the library as C callbacks.
// (cgo forbids C definitions in the preamble of a file that exports Go
// functions, so they live here.)
#include <stdint.h>

#include "_cgo_export.h"

int32_t hydra_go_on_message(struct hydra *h, uintptr_t handle) {
    // The handle is a number (a runtime/cgo.Handle), not a Go pointer: C may
    // keep it for as long as it likes.
    return hydra_on_message(h, (hydra_message_callback)hydraGoOnMessage, (void *)handle,
                            (hydra_free_callback)hydraGoFreeHandler);
}
