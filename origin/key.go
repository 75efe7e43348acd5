package origin

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// KeyFileName is the origin's signing key in its data directory.
const KeyFileName = "origin-key.pem"

// LoadOrCreateKey reads the Ed25519 private key in path (PKCS #8 PEM, as
// `openssl genpkey -algorithm ed25519` writes it), creating one there,
// readable by the owner only, if there is none.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("origin key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("origin key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("origin key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("origin key %s: a %T, not Ed25519", path, k)
	}
	return ek, nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("origin key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("origin key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("origin key: %w", err)
	}
	// O_EXCL: two origins starting on one data dir must not each write a
	// key and sign with different ones.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("origin key: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("origin key %s: %w", path, err)
	}
	return k, nil
}

// keyAnswer is GET /v1/key.
type keyAnswer struct {
	// Ed25519 is the public key file info is signed with, standard base64.
	Ed25519 string `json:"ed25519"`
}

// PublicKey is the key proxies verify this origin's file info with.
func (s *Server) PublicKey() ed25519.PublicKey {
	return s.key.Public().(ed25519.PublicKey)
}

func (s *Server) getKey(c *gin.Context) error {
	c.JSON(http.StatusOK, keyAnswer{Ed25519: fileinfo.EncodeKey(s.PublicKey())})
	return nil
}
