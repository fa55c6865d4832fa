// Command etcd is etcd's own server entry point at the version kubeadm pairs with the
// pinned Kubernetes release (see go.mod).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
