package runtime

// reusePortBalances: Linux balances connections among SO_REUSEPORT
// sockets, so SchedReusePort is available.
const reusePortBalances = true
