// Command vmboot builds a test image from Debian packages and boots it
// under QEMU with a vTPM, for make demo-vm:
//
//	vmboot image --out DIR [--cmdline LINE]   build DIR/esp.img (and the UKI) from this module
//	vmboot run --esp FILE --dir DIR --ready-file FILE [--ak-pub-out FILE]
//
// run writes the agent's HOST:PORT to the ready file once it answers and
// keeps the VM running until it is interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/vmtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "vmboot: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: vmboot image|run [flags]")
	}
	tools, err := vmtest.FindTools()
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("vmboot "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "image":
		out := fs.String("out", "", "build the image in `DIR`")
		cmdline := fs.String("cmdline", vmtest.DefaultCmdline, "kernel command line of the UKI")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" {
			return errors.New("image: --out DIR is required")
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		k, err := vmtest.FetchKernel(ctx, "", func(s string) { fmt.Fprintln(os.Stderr, s) })
		if err != nil {
			return err
		}
		agent, init, err := vmtest.BuildGuest(ctx, ".", *out)
		if err != nil {
			return err
		}
		img, err := vmtest.BuildImage(ctx, *out, vmtest.ImageOptions{Tools: tools, Kernel: k, Agent: agent, Init: init, Cmdline: *cmdline})
		if err != nil {
			return err
		}
		fmt.Printf("%s (UKI %s; kernel %s %s; command line %q)\n", img.ESP, img.UKI, k.Package, k.Version, *cmdline)
		return nil
	case "run":
		esp := fs.String("esp", "", "boot the ESP image `FILE`")
		dir := fs.String("dir", "", "keep the VM's state and console log in `DIR`")
		ready := fs.String("ready-file", "", "write the agent's HOST:PORT to `FILE` once it answers")
		akOut := fs.String("ak-pub-out", "", "write the agent's attestation key (PEM) to `FILE`")
		timeout := fs.Duration("timeout", vmtest.DefaultBootTimeout, "time allowed for the boot")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *esp == "" || *dir == "" {
			return errors.New("run: --esp FILE and --dir DIR are required")
		}
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		vm, err := vmtest.Boot(ctx, tools, *esp, *dir, *timeout)
		if err != nil {
			return err
		}
		defer vm.Close()
		fmt.Fprintf(os.Stderr, "vmboot: %s booted in %.1fs; agent on %s\n", *esp, vm.BootTime.Seconds(), vm.Agent)
		if *akOut != "" {
			if err := fetchAK(ctx, vm.Agent, *akOut); err != nil {
				return err
			}
		}
		if *ready != "" {
			if err := os.WriteFile(*ready, []byte(vm.Agent+"\n"), 0o644); err != nil {
				return err
			}
			defer os.Remove(*ready)
		}
		<-ctx.Done()
		return nil
	default:
		return fmt.Errorf("unknown subcommand %q: want image or run", args[0])
	}
}

// fetchAK writes the agent's AK public key as it serves it: the demo pins
// the key of the VM it just booted on this machine's loopback.
func fetchAK(ctx context.Context, addr, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+agentapi.AKPath, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s: GET %s: %s", addr, agentapi.AKPath, resp.Status)
	}
	return os.WriteFile(out, b, 0o644)
}
