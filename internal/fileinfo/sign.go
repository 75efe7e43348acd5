package fileinfo

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// signContext starts every signed message, so that a signature over file
// info can never be taken for one over anything else the key signs.
const signContext = "p2sp file info v1\x00"

// Verification errors, wrapped by Verify.
var (
	ErrUnsigned     = errors.New("file info is not signed")
	ErrBadSignature = errors.New("file info signature does not verify with any trusted origin key")
)

// SignedBytes is the canonical encoding an origin signs: every field that
// says what the file's bytes are and where they come from (path, size,
// piece length, piece hashes, SHA-256, infohash, the version's ETag and
// modification time, the origins), each length-prefixed so that no two
// records encode alike. Peers and the signature itself are left out.
func (fi *Info) SignedBytes() []byte {
	b := make([]byte, 0, len(signContext)+len(fi.Pieces)+len(fi.Path)+256)
	b = append(b, signContext...)
	str := func(s []byte) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	num := func(n int64) { b = binary.BigEndian.AppendUint64(b, uint64(n)) }
	str([]byte(fi.Path))
	num(fi.Size)
	num(fi.PieceLength)
	str(fi.Pieces)
	str([]byte(strings.ToLower(fi.SHA256)))
	str([]byte(strings.ToLower(fi.InfoHash)))
	str([]byte(fi.ETag))
	num(fi.ModTime.Unix())
	num(int64(fi.ModTime.Nanosecond()))
	num(int64(len(fi.Origins)))
	for _, o := range fi.Origins {
		str([]byte(o))
	}
	return b
}

// Sign sets fi.Signature with key.
func (fi *Info) Sign(key ed25519.PrivateKey) {
	fi.Signature = ed25519.Sign(key, fi.SignedBytes())
}

// Verify checks that one of keys signed fi as it is now.
func (fi *Info) Verify(keys []ed25519.PublicKey) error {
	if len(fi.Signature) == 0 {
		return fmt.Errorf("%s: %w", fi.Path, ErrUnsigned)
	}
	msg := fi.SignedBytes()
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, fi.Signature) {
			return nil
		}
	}
	return fmt.Errorf("%s: %w", fi.Path, ErrBadSignature)
}

// EncodeKey is a public key as the origin serves it and --origin-key
// takes it: standard base64.
func EncodeKey(k ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(k)
}

// ParseKey reads an Ed25519 public key in base64 (standard or URL
// alphabet, padded or not) or hex.
func ParseKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	for _, dec := range []func(string) ([]byte, error){
		hex.DecodeString,
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString,
	} {
		if b, err := dec(s); err == nil && len(b) == ed25519.PublicKeySize {
			return ed25519.PublicKey(b), nil
		}
	}
	// At most 64 characters of it: it may be a stranger's answer.
	return nil, fmt.Errorf("origin key %.64q is not a %d-byte Ed25519 public key in base64 or hex", s, ed25519.PublicKeySize)
}
