module zhengyun.io/hack/node/pause

go 1.26
