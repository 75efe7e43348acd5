// Package deploy holds no code: it is the home of p2sp's deployment files
// (compose.yaml, k8s/, prometheus/, grafana/) and of the test that parses
// them and checks what operators rely on: every Kubernetes object is
// well formed and probed, the compose services run the one image, and the
// dashboard queries only metrics the components really export.
package deploy
