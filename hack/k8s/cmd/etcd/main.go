// Command etcd is etcd's own server entry point, built from the same module graph as
// kube-apiserver so the local control plane needs no system package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
