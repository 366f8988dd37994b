// Command hydra-go is a Hydra service written in Go on hydra-rs's C ABI (see
// package hydra): it registers, asks the services named by -ask (a Rust,
// Node, C or Python echo) and prints their replies, then answers every
// message sent to it with {"go": <the message's body>} until its standard
// input ends or it gets SIGINT/SIGTERM.
//
//	HYDRA_REDIS_URL=redis://127.0.0.1:6379/15 go run . -name go-echo -ask rust-echo,node-echo
//
// It prints "reply <service> <body>" per answer, "ready <instanceID>" once it
// serves, and "closed, <n> handlers held" after closing (0: the library
// released the Go handler).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"example.com/hydra-go/hydra"
)

func main() {
	name := flag.String("name", "go-echo", "the service name to register")
	ask := flag.String("ask", "", "comma-separated services to send one request each")
	timeout := flag.Duration("timeout", 5*time.Second, "how long to wait for each reply")
	flag.Parse()
	if err := run(*name, *ask, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "hydra-go:", err)
		os.Exit(1)
	}
}

func run(name, ask string, timeout time.Duration) error {
	h, err := hydra.New(name)
	if err != nil {
		return fmt.Errorf("new: %w", err)
	}
	defer func() {
		h.Close()
		fmt.Printf("closed, %d handlers held\n", hydra.LiveHandlers())
	}()
	err = h.OnMessage(func(h *hydra.Hydra, message hydra.Message) error {
		if message.Rmid != "" {
			return nil // a reply (e.g. a late one): never answer replies
		}
		return h.Reply(message, map[string]any{"go": message.Body})
	})
	if err != nil {
		return fmt.Errorf("on message: %w", err)
	}
	if err := h.Register(); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	for _, service := range strings.Split(ask, ",") {
		if service == "" {
			continue
		}
		request := map[string]any{"to": service + ":/", "body": map[string]any{"from": name, "lang": "go"}}
		reply, err := h.Request(request, timeout)
		if err != nil {
			return fmt.Errorf("request to %s: %w", service, err)
		}
		fmt.Printf("reply %s %s\n", service, reply.Body)
	}
	id, err := h.InstanceID()
	if err != nil {
		return err
	}
	fmt.Printf("ready %s (hydra-rs %s)\n", id, hydra.Version())

	done := make(chan struct{})
	go func() {
		// Standard input ends: stop.
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
		}
		close(done)
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-signals:
	}
	return nil
}
