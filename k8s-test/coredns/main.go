// CoreDNS with only the plugins the test node needs: cluster names from the API server,
// answered on the pod bridge's gateway address, and nothing forwarded anywhere (there is no
// upstream to reach, and nothing but the node's own ranges may be addressed).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() {
	// The order a query passes the plugins in, as in CoreDNS's own plugin.cfg.
	dnsserver.Directives = []string{"bind", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
