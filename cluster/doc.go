// Package cluster owns what makes several csrd nodes on one PostgreSQL
// database one service: each node's registration and heartbeat in the node
// registry (with the tokens it reaches), the leases that heartbeat renews
// on the work a node has in progress, finding a live node that reaches a
// given token, and forwarding an authorised request to it, signed with the
// secret the nodes share.
//
// It keeps no state of its own beyond the registry rows: a node that
// stops heart-beating is gone for the others after cluster.node_timeout,
// and one that comes back registers again. It decides nothing about
// records or tokens (lifecycle does) and serves no HTTP (api does); it is
// the client side of forwarding and the check of a forwarded request's
// signature.
//
// Node clocks must agree to well within node_timeout (NTP): liveness
// compares a heartbeat written by one node's clock with another's.
package cluster
