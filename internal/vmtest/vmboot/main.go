// Command vmboot builds a test image from Debian packages and boots it
// under QEMU with a vTPM, for make demo-vm:
//
//	vmboot image --out DIR [--cmdline LINE] [--module DIR]   build DIR/esp.img (and the UKI)
//	vmboot run --esp FILE --dir DIR --ready-file FILE [--ak-pub-out FILE] [--event-log-out FILE]
//	vmboot compare PRECALC MEASURED   the table of two measurements documents; fails when they differ
//
// run writes the agent's HOST:PORT to the ready file once it answers and
// keeps the VM running until it is interrupted.
package main

import (
	"context"
	"crypto/rand"
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
	"github.com/mtuf/mtuf/metadata"
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
		module := fs.String("module", ".", "build mtuf-agent from the mtuf module in `DIR`")
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
		agent, init, err := vmtest.BuildGuest(ctx, *module, *out)
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
		logOut := fs.String("event-log-out", "", "write the event log the agent serves to `FILE`")
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
		if *logOut != "" {
			if err := fetchEventLog(ctx, vm.Agent, *logOut); err != nil {
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
	case "compare":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return errors.New("usage: vmboot compare PRECALC MEASURED")
		}
		var docs [2]*metadata.Measurements
		for i, name := range fs.Args() {
			data, err := os.ReadFile(name)
			if err != nil {
				return err
			}
			if docs[i], err = metadata.Parse(data); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		table, err := vmtest.ComparePCRs(docs[0], docs[1])
		fmt.Print(table)
		return err
	default:
		return fmt.Errorf("unknown subcommand %q: want image, run or compare", args[0])
	}
}

// fetchEventLog writes the firmware's event log that the agent serves with
// its attestations: the reference log of the release image's boot.
func fetchEventLog(ctx context.Context, addr, out string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	att, err := agentapi.Fetch(ctx, http.DefaultClient, "http://"+addr, nonce)
	if err != nil {
		return err
	}
	if len(att.GetEventLog()) == 0 {
		return fmt.Errorf("agent %s serves no event log", addr)
	}
	return os.WriteFile(out, att.GetEventLog(), 0o644)
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
