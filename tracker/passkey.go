package tracker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/httpapi"
)

// A passkey is what lets a peer into the tracker's swarms: the announce URL
// carries it (/announce/<passkey>, as private BitTorrent trackers do, so
// that any client that only speaks a .torrent's announce URL can use it),
// the tracker lists only peers that announced with a passkey it issued, and
// only the passkey that registered a peer may stop or change it. The
// operator issues one per user or per proxy (POST /v1/passkeys with the
// tracker's token, or "p2sp tracker passkey add NAME") and revokes it by
// name: its announces are refused from then on and its peers are dropped
// at once.
//
// A passkey is 32 random bytes (base64url), so guessing one is hopeless and
// an unknown passkey costs one store lookup under the announce rate limit;
// the tracker keeps only its SHA-256 (credID), as the origin keeps only its
// users' tokens' hashes.

// DefaultPeersPerAddr is how many peers one source address may have listed
// in one swarm by default: enough for several users behind one NAT, few
// enough that one host cannot fill a swarm with addresses that waste its
// peers' connection slots.
const DefaultPeersPerAddr = 8

// MinPeerPort is the lowest port a peer may announce: below it are the
// system's services (22, 80, 443...), which nobody may make proxies dial.
const MinPeerPort = 1024

// maxPasskeyLen bounds what the announce path may carry as a passkey.
const maxPasskeyLen = 128

// errUnknownPasskey is returned for an announce whose passkey the tracker
// never issued or has revoked.
var errUnknownPasskey = errors.New("unknown or revoked passkey")

// credID identifies a passkey: its SHA-256.
type credID [sha256.Size]byte

func passkeyID(passkey string) credID { return sha256.Sum256([]byte(passkey)) }

// Credential is what the tracker keeps of an issued passkey.
type Credential struct {
	ID      credID    `json:"-"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

var credNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// newPasskey makes a passkey for name and its credential.
func newPasskey(name string) (string, Credential, error) {
	if !credNameRE.MatchString(name) {
		return "", Credential{}, fmt.Errorf("passkey name %q: want 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	pk := base64.RawURLEncoding.EncodeToString(raw)
	return pk, Credential{ID: passkeyID(pk), Name: name, Created: time.Now().UTC().Truncate(time.Second)}, nil
}

// issued is the answer to an issued passkey.
type issued struct {
	Name    string `json:"name"`
	Passkey string `json:"passkey"`
	// Announce is the announce URL that carries the passkey.
	Announce string `json:"announce"`
}

// postPasskey issues a passkey: POST /v1/passkeys {"name": NAME}, with the
// tracker's token. Several passkeys may share a name (one per proxy of a
// user, say); revoking the name revokes them all.
func (s *Server) postPasskey(c *gin.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := readJSON(c, 4<<10, &req); err != nil {
		return err
	}
	pk, cred, err := newPasskey(req.Name)
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "%w", err)
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	if err := s.store.AddPasskey(ctx, cred); err != nil {
		return err
	}
	s.log.Info("passkey issued", "name", cred.Name, "from", httpapi.RemoteAddr(c.Request))
	c.JSON(http.StatusCreated, issued{Name: cred.Name, Passkey: pk, Announce: s.announceURL(c.Request, pk)})
	return nil
}

// listPasskeys answers the live credentials' names and dates (never a
// passkey: the tracker does not have them).
func (s *Server) listPasskeys(c *gin.Context) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	all, err := s.store.Passkeys(ctx)
	if err != nil {
		return err
	}
	if all == nil {
		all = []Credential{}
	}
	c.JSON(http.StatusOK, all)
	return nil
}

// revokePasskey revokes every passkey of a name: DELETE
// /v1/passkeys/NAME. Their announces are refused and their peers dropped.
func (s *Server) revokePasskey(c *gin.Context) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	n, err := s.store.Revoke(ctx, c.Param("name"))
	if err != nil {
		return err
	}
	if n == 0 {
		return httpapi.Errorf(http.StatusNotFound, "no passkey named %q", c.Param("name"))
	}
	s.log.Info("passkeys revoked", "name", c.Param("name"), "count", n)
	c.JSON(http.StatusOK, map[string]int{"revoked": n})
	return nil
}

// IssuePasskey asks the tracker at trackerURL, with its token, for a new
// passkey named name and returns it.
func IssuePasskey(ctx context.Context, hc *http.Client, trackerURL, token, name string) (string, error) {
	var out issued
	if err := operatorCall(ctx, hc, http.MethodPost, trackerURL+"/v1/passkeys", token, map[string]string{"name": name}, &out); err != nil {
		return "", fmt.Errorf("issue passkey %s: %w", name, err)
	}
	return out.Passkey, nil
}

// RevokePasskey revokes every passkey named name at the tracker at
// trackerURL and returns how many there were.
func RevokePasskey(ctx context.Context, hc *http.Client, trackerURL, token, name string) (int, error) {
	var out struct {
		Revoked int `json:"revoked"`
	}
	if err := operatorCall(ctx, hc, http.MethodDelete, trackerURL+"/v1/passkeys/"+url.PathEscape(name), token, nil, &out); err != nil {
		return 0, fmt.Errorf("revoke passkey %s: %w", name, err)
	}
	return out.Revoked, nil
}

// operatorCall makes one token-authenticated JSON call and decodes its
// (small) answer into out.
func operatorCall(ctx context.Context, hc *http.Client, method, u, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tracker answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}
