// Command govmomi-sim serves govmomi's vSphere simulator (vcsim) on an ephemeral
// 127.0.0.1 port over plain HTTP, for Homeward's compatibility tests
// (tests/vmware_adapters.rs). It prints `host:port` on its first line, then serves until
// its standard input closes, so the test that spawned it stops it even when it fails.
//
// Build offline from Debian's packages (golang-go, golang-github-vmware-govmomi-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o govmomi-sim ./tests/govmomi-sim
//
// Login: user `user`, password `pass` (the simulator's default).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	mode := flag.String("mode", "vpx", "vpx (a vCenter) or esx (a standalone ESXi host)")
	flag.Parse()

	var model *simulator.Model
	switch *mode {
	case "vpx":
		model = simulator.VPX()
	case "esx":
		model = simulator.ESX()
	default:
		log.Fatalf("unknown mode %q: use vpx or esx", *mode)
	}
	defer model.Remove()
	if err := model.Create(); err != nil {
		log.Fatalf("creating the %s model: %v", *mode, err)
	}
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0"}
	server := model.Service.NewServer()
	defer server.Close()

	fmt.Println(server.URL.Host)
	// Block until the parent closes our stdin (or exits).
	_, _ = io.Copy(io.Discard, os.Stdin)
}
