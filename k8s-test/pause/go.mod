// The pod sandbox ("pause") image's one program: the registry's pause image cannot be
// pulled here. See ../README.md.
module gostream.local/k8s-test/pause

go 1.26.0
