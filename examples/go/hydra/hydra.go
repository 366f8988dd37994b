// Package hydra is a small Go binding of hydra-rs's C ABI (hydra.h,
// libhydra) through cgo: a Hydra service that registers, sends requests and
// answers messages, wire-compatible with Node hydra 1.9.x and with hydra-rs
// services in Rust, C and Python.
//
// It finds the library with pkg-config (`make -C ffi install PREFIX=...`, then
// PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig). Messages cross as JSON, as in the
// C ABI.
//
// Go pointers never reach C: a message handler is registered as a
// runtime/cgo.Handle (a number in a table), and the library's finalizer
// (free_user_data) deletes it when the handler is replaced or the service
// closed. The library's error message is per OS thread, so every call and
// the reading of its error happen on one locked thread.
package hydra

/*
#cgo pkg-config: hydra
#include <stdint.h>
#include <stdlib.h>
#include <hydra.h>

// bridge.c
int32_t hydra_go_on_message(struct hydra *h, uintptr_t handle);
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync/atomic"
	"time"
	"unsafe"
)

// Error is a failed call: the library's status code, its name
// (HYDRA_TIMEOUT, ...) and the reason (hydra_last_error_message).
type Error struct {
	Status  int32
	Name    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Name, e.Message) }

// call runs f (one library call) and turns its status into an error, reading
// the thread-local reason on the same OS thread.
func call(f func() C.int32_t) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	status := f()
	if status == C.HYDRA_OK {
		return nil
	}
	return &Error{
		Status:  int32(status),
		Name:    C.GoString(C.hydra_status_name(status)),
		Message: C.GoString(C.hydra_last_error_message()),
	}
}

// take copies a string the library returned and releases it.
func take(s *C.char) string {
	defer C.hydra_string_free(s)
	return C.GoString(s)
}

// Version is the library's version.
func Version() string { return C.GoString(C.hydra_version()) }

// Hydra is one service instance (a `hydra *` handle).
type Hydra struct {
	ptr *C.hydra
}

// New makes a service named name; Redis and other settings come from
// HYDRA_REDIS_URL and HYDRA_SERVICE, as in Node hydra.
func New(name string) (*Hydra, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	h := &Hydra{}
	if err := call(func() C.int32_t { return C.hydra_new_with_name(cname, &h.ptr) }); err != nil {
		return nil, err
	}
	return h, nil
}

// NewFromConfig makes a service from Node hydra's config document
// ({"hydra": {"serviceName": ..., "redis": {"url": ...}}}).
func NewFromConfig(config any) (*Hydra, error) {
	text, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	cconfig := C.CString(string(text))
	defer C.free(unsafe.Pointer(cconfig))
	h := &Hydra{}
	if err := call(func() C.int32_t { return C.hydra_new(cconfig, &h.ptr) }); err != nil {
		return nil, err
	}
	return h, nil
}

// Close shuts the service down (deregisters, waits for running handlers) and
// releases it. Calling it again does nothing.
func (h *Hydra) Close() {
	C.hydra_free(h.ptr)
	h.ptr = nil
}

// Register registers the service: presence, heartbeats, messages.
func (h *Hydra) Register() error {
	return call(func() C.int32_t { return C.hydra_register_service(h.ptr, nil) })
}

// InstanceID is this instance's ID.
func (h *Hydra) InstanceID() (string, error) {
	var out *C.char
	if err := call(func() C.int32_t { return C.hydra_get_instance_id(h.ptr, &out) }); err != nil {
		return "", err
	}
	return take(out), nil
}

// Message is a UMF message in long form; Raw is its JSON text.
type Message struct {
	To   string          `json:"to"`
	From string          `json:"from"`
	Mid  string          `json:"mid"`
	Rmid string          `json:"rmid,omitempty"`
	Body json.RawMessage `json:"body"`
	Raw  []byte          `json:"-"`
}

func parseMessage(text string) (Message, error) {
	var m Message
	err := json.Unmarshal([]byte(text), &m)
	m.Raw = []byte(text)
	return m, err
}

// Request sends a message ({"to": "service:/", "body": ...}; from, mid and
// timestamp are filled in) and waits up to timeout for its reply.
func (h *Hydra) Request(message any, timeout time.Duration) (Message, error) {
	text, err := json.Marshal(message)
	if err != nil {
		return Message{}, err
	}
	cmessage := C.CString(string(text))
	defer C.free(unsafe.Pointer(cmessage))
	var out *C.char
	millis := C.uint64_t(timeout / time.Millisecond)
	if err := call(func() C.int32_t { return C.hydra_request(h.ptr, cmessage, millis, &out) }); err != nil {
		return Message{}, err
	}
	return parseMessage(take(out))
}

// Reply answers original with a message whose body is body.
func (h *Hydra) Reply(original Message, body any) error {
	text, err := json.Marshal(body)
	if err != nil {
		return err
	}
	coriginal := C.CString(string(original.Raw))
	defer C.free(unsafe.Pointer(coriginal))
	cbody := C.CString(string(text))
	defer C.free(unsafe.Pointer(cbody))
	return call(func() C.int32_t { return C.hydra_reply(h.ptr, coriginal, cbody) })
}

// MessageHandler handles one message, on a library thread (several may run
// at once). An error is logged by the library and counted as failed.
type MessageHandler func(h *Hydra, message Message) error

type messageEntry struct {
	hydra   *Hydra
	handler MessageHandler
}

var liveHandlers atomic.Int64

// LiveHandlers is how many message handlers the library still holds (each
// is released by the library's finalizer): 0 after every service is closed.
func LiveHandlers() int64 { return liveHandlers.Load() }

// OnMessage sets the message handler, replacing any earlier one.
func (h *Hydra) OnMessage(handler MessageHandler) error {
	handle := cgo.NewHandle(&messageEntry{hydra: h, handler: handler})
	liveHandlers.Add(1)
	err := call(func() C.int32_t { return C.hydra_go_on_message(h.ptr, C.uintptr_t(handle)) })
	if err != nil {
		// On failure the library does not own the handle.
		handle.Delete()
		liveHandlers.Add(-1)
	}
	return err
}

//export hydraGoOnMessage
func hydraGoOnMessage(userData unsafe.Pointer, _ *C.hydra, messageJSON *C.char) C.int32_t {
	entry := cgo.Handle(uintptr(userData)).Value().(*messageEntry)
	message, err := parseMessage(C.GoString(messageJSON))
	if err == nil {
		err = entry.handler(entry.hydra, message)
	}
	if err == nil {
		return C.HYDRA_OK
	}
	reason := C.CString(err.Error())
	defer C.free(unsafe.Pointer(reason))
	// A callback runs on the library's thread from start to end: the
	// library reads this reason there right after we return.
	C.hydra_set_last_error_message(reason)
	return C.HYDRA_CALLBACK_FAILED
}

//export hydraGoFreeHandler
func hydraGoFreeHandler(userData unsafe.Pointer) {
	cgo.Handle(uintptr(userData)).Delete()
	liveHandlers.Add(-1)
}
