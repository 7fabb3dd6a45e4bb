// Package faults is enrollgate's fault suite: on a real 3-node cluster of
// nats-server processes (internal/natscluster, the shipped configuration)
// with three enrollgate replicas as processes, it drives bounded load over
// NATS (through the replicas' edges) and HTTP, injects failures (SIGKILL of
// the event stream's leader, of the meta leader, of every node, of a replica
// right after a lockout's last failure, of every replica; a simultaneous first
// start; a lockout storm), and checks what must hold afterwards: every
// acknowledged verdict's event is stored, none twice, each lockout has one
// disable and one alert, the replicas' read models agree. It measures the
// unavailability and the delay from a lockout's last failure to its alert.
//
// cmd/enrollgate-faults (make faults) runs every scenario and prints the
// table; the package's test runs a short version inside make test.
package faults
