// Command etcd is the etcd server from the published go.etcd.io/etcd/server/v3 module,
// built here because no release binary can be downloaded on the CI machines.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
