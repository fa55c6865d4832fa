module dex.local/tools/coredns/probe

go 1.24
