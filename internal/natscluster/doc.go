// Package natscluster runs a real NATS cluster for the fault suite and the
// tests: nats-server processes built from the module cache, each started
// with the cluster configuration the project ships
// (deploy/nats/cluster.conf), on loopback ports, so that a test can SIGKILL
// and restart nodes. natstest.StartCluster is its form for a test.
package natscluster
