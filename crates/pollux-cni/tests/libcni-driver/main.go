// libcni-driver: the runtime side of the lab's CNI tests. It drives a
// network configuration list through containernetworking/cni's libcni, as
// a container runtime does, so the plugin is judged by the reference
// runtime library rather than by our own reading of the spec.
//
// Usage: libcni-driver add|check|del CONFLIST CONTAINERID NETNS IFNAME [CAPARGS-JSON [CNI_ARGS]]
//
// CNI_PATH and the libcni cache directory come from the environment
// (CNI_PATH, LIBCNI_CACHE_DIR). ADD prints the result as JSON; any failure
// prints {"error": {...}} with the plugin's code when there is one and
// exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func fail(err error) {
	out := map[string]interface{}{"msg": err.Error()}
	// libcni wraps the plugin's error ("plugin ... failed (add): %w").
	var e *types.Error
	if errors.As(err, &e) {
		out["code"] = e.Code
		out["msg"] = e.Msg
		out["details"] = e.Details
	}
	b, _ := json.Marshal(map[string]interface{}{"error": out})
	fmt.Println(string(b))
	os.Exit(1)
}

func main() {
	if len(os.Args) < 6 {
		fmt.Fprintln(os.Stderr, "usage: libcni-driver add|check|del CONFLIST CONTAINERID NETNS IFNAME [CAPARGS-JSON [CNI_ARGS]]")
		os.Exit(2)
	}
	op, file, cid, netns, ifname := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		fail(err)
	}
	rt := &libcni.RuntimeConf{ContainerID: cid, NetNS: netns, IfName: ifname}
	if len(os.Args) > 6 && os.Args[6] != "" {
		if err := json.Unmarshal([]byte(os.Args[6]), &rt.CapabilityArgs); err != nil {
			fail(err)
		}
	}
	if len(os.Args) > 7 && os.Args[7] != "" {
		for _, kv := range strings.Split(os.Args[7], ";") {
			p := strings.SplitN(kv, "=", 2)
			if len(p) == 2 {
				rt.Args = append(rt.Args, [2]string{p[0], p[1]})
			}
		}
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("LIBCNI_CACHE_DIR"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	switch op {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		b, err := json.Marshal(res)
		if err != nil {
			fail(err)
		}
		fmt.Println(string(b))
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown operation", op)
		os.Exit(2)
	}
}
