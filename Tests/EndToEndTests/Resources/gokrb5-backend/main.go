// A Negotiate backend written the way Go services are: gokrb5 v8's SPNEGO middleware (Debian's
// golang-github-jcmturner-gokrb5.v8-dev). It answers /whoami with the user the ticket names, in the same
// key=value lines as the test bed's Apache, and /health without authentication.
//
// Usage: gokrb5-backend -listen 127.0.0.1:PORT -keytab app.keytab
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/jcmturner/goidentity/v6"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/service"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	keytabFile := flag.String("keytab", "", "the service's keytab")
	flag.Parse()
	kt, err := keytab.Load(*keytabFile)
	if err != nil {
		log.Fatalf("keytab %s: %v", *keytabFile, err)
	}
	logger := log.New(os.Stderr, "gokrb5-backend: ", log.LstdFlags)
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := goidentity.FromHTTPRequestContext(r)
		if id == nil {
			http.Error(w, "no identity", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "user=%s@%s\nrequest_had_token=yes\ngss_mech=Negotiate/gokrb5\nserver=gokrb5\n", id.UserName(), id.Domain())
	})
	mux := http.NewServeMux()
	mux.Handle("/whoami", spnego.SPNEGOKRB5Authenticate(whoami, kt, service.Logger(logger), service.DecodePAC(false)))
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	logger.Printf("listening on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, mux))
}
