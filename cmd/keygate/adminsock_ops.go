package main

import "net/http"

// adminOps registers the operational endpoints of the admin socket
// (backup, …) next to the user commands.
func (a *app) adminOps(mux *http.ServeMux) {}
