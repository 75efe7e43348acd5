package tracker

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// The Redis store's keys, all under one prefix so that a Redis database can
// be inspected (and emptied) by it:
//
//	p2sp:files            hash  path → file info (JSON)
//	p2sp:paths            hash  path → infohash (hex), for the scripts
//	p2sp:refs             hash  infohash → how many paths have it; a
//	                            swarm exists exactly while it is here
//	p2sp:passkeys         hash  passkey SHA-256 (hex) → Credential (JSON)
//	p2sp:s:<infohash>:seen   zset  peer → last announce (ms, Redis clock)
//	p2sp:s:<infohash>:peers  hash  peer → "1" or "0" (complete), the
//	                               owner's passkey SHA-256 (64 hex), address
//	p2sp:s:<infohash>:seeds  set   the complete peers, for the counts
//	p2sp:s:<infohash>:dl     string how many completed downloads
//	p2sp:s:<infohash>:ips    hash  IP (4 or 16 bytes) → listed peers
//
// A peer is its id (20 bytes) and IP (4 or 16 bytes) together, as
// peerKey. Every change is one Lua script, so that replicas never see half
// of one, and expiry uses the Redis server's clock, so that replicas with
// skewed clocks still agree on who is live. The scripts name keys that
// they derive from the infohash, so this needs one Redis (or a primary with
// replicas), not Redis Cluster.
const (
	redisPrefix = "p2sp:"
	keyFiles    = redisPrefix + "files"
	keyPaths    = redisPrefix + "paths"
	keyRefs     = redisPrefix + "refs"
	keyPasskeys = redisPrefix + "passkeys"
)

// swarmKeys are one infohash's keys, in the order the scripts take them
// (after keyRefs).
func swarmKeys(hexHash string) []string {
	p := redisPrefix + "s:" + hexHash
	return []string{keyRefs, p + ":seen", p + ":peers", p + ":seeds", p + ":dl", p + ":ips"}
}

// luaExpire is every swarm script's prologue: now is the Redis clock in
// ms, unlist removes a peer, and expire drops the swarm's peers last heard
// of before dead. unpack is given at most 1000 values at a time: Lua's
// stack is bounded.
const luaExpire = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function uncount(key)
  local ip = string.sub(key, 21)
  if redis.call('HINCRBY', KEYS[6], ip, -1) <= 0 then redis.call('HDEL', KEYS[6], ip) end
end
local function unlist(key)
  redis.call('ZREM', KEYS[2], key)
  redis.call('HDEL', KEYS[3], key)
  redis.call('SREM', KEYS[4], key)
  uncount(key)
end
local function expire(dead)
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. dead)
  for i = 1, #old, 1000 do
    local chunk = {unpack(old, i, math.min(i + 999, #old))}
    redis.call('HDEL', KEYS[3], unpack(chunk))
    redis.call('SREM', KEYS[4], unpack(chunk))
  end
  for _, k in ipairs(old) do uncount(k) end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. dead) end
end
`

// announceScript: KEYS swarmKeys then keyPasskeys; ARGV infohash, peer,
// "1"/"0" complete, address, event, ttl ms, cap, how many peers to sample,
// the passkey's SHA-256 (hex), cap per IP. It returns {-1} for an unknown
// passkey, nil for an unregistered infohash, else {complete, incomplete,
// {peer, value, ...}, listed}. The rules are swarms.announce's.
var announceScript = redis.NewScript(luaExpire + `
if redis.call('HEXISTS', KEYS[7], ARGV[9]) == 0 then return {-1} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return nil end
expire(now - tonumber(ARGV[6]))
local key, complete, event, owner = ARGV[2], ARGV[3] == '1', ARGV[5], ARGV[9]
local cur = redis.call('HGET', KEYS[3], key)
local store = false
if cur and string.sub(cur, 2, 65) ~= owner then
  -- somebody else's entry: answered, never touched
elseif event == 'stopped' then
  if cur then unlist(key) end
elseif cur then
  if event == 'completed' and redis.call('SISMEMBER', KEYS[4], key) == 0 then redis.call('INCR', KEYS[5]) end
  store = true
elseif redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[7]) and
    tonumber(redis.call('HGET', KEYS[6], string.sub(key, 21)) or '0') < tonumber(ARGV[10]) then
  if event == 'completed' then redis.call('INCR', KEYS[5]) end
  redis.call('HINCRBY', KEYS[6], string.sub(key, 21), 1)
  store = true
end
if store then
  redis.call('ZADD', KEYS[2], now, key)
  redis.call('HSET', KEYS[3], key, ARGV[3] .. owner .. ARGV[4])
  if complete then redis.call('SADD', KEYS[4], key) else redis.call('SREM', KEYS[4], key) end
end
local seeds = redis.call('SCARD', KEYS[4])
local sample = {}
local want = tonumber(ARGV[8])
if want > 0 then sample = redis.call('HRANDFIELD', KEYS[3], want, 'WITHVALUES') end
return {seeds, redis.call('ZCARD', KEYS[2]) - seeds, sample, store and 1 or 0}
`)

// swarmScript expires a swarm and reads it: ARGV infohash, ttl ms, how
// many peers to sample. It returns nil for an unregistered infohash, else
// {complete, incomplete, downloaded, {peer, value, ...}}.
var swarmScript = redis.NewScript(luaExpire + `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return nil end
expire(now - tonumber(ARGV[2]))
local seeds = redis.call('SCARD', KEYS[4])
local sample = {}
local want = tonumber(ARGV[3])
if want > 0 then sample = redis.call('HRANDFIELD', KEYS[3], want, 'WITHVALUES') end
return {seeds, redis.call('ZCARD', KEYS[2]) - seeds, tonumber(redis.call('GET', KEYS[5]) or '0'), sample}
`)

// revokeScript: KEYS keyPasskeys; ARGV a name. It removes the name's
// credentials and returns their ids.
var revokeScript = redis.NewScript(`
local all = redis.call('HGETALL', KEYS[1])
local ids = {}
for i = 1, #all, 2 do
  if cjson.decode(all[i + 1]).name == ARGV[1] then
    redis.call('HDEL', KEYS[1], all[i])
    ids[#ids + 1] = all[i]
  end
end
return ids
`)

// dropScript: KEYS swarmKeys; ARGV passkey ids. It drops the swarm's
// peers that those passkeys registered.
var dropScript = redis.NewScript(luaExpire + `
local gone = {}
for _, id in ipairs(ARGV) do gone[id] = true end
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  if gone[string.sub(all[i + 1], 2, 65)] then unlist(all[i]) end
end
return 0
`)

// registerScript: KEYS files, paths, refs; ARGV path, info JSON, infohash,
// swarm key prefix. It stores the record, retains the new infohash before
// releasing the old one (re-registering the same bytes keeps their swarm),
// drops a swarm nobody has any more, and returns the replaced record or
// nil.
var registerScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
local oldh = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
if oldh and redis.call('HINCRBY', KEYS[3], oldh, -1) <= 0 then
  redis.call('HDEL', KEYS[3], oldh)
  local p = ARGV[4] .. oldh
  redis.call('DEL', p .. ':seen', p .. ':peers', p .. ':seeds', p .. ':dl', p .. ':ips')
end
return old
`)

// redisStore keeps the registry and the swarms in Redis, shared by every
// tracker replica that uses the same database.
type redisStore struct {
	rdb *redis.Client
	lim swarmLimits

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*redisStore)(nil)

// openRedisStore connects to rawURL (redis://[user:password@]HOST:PORT/DB)
// and checks that the server answers.
func openRedisStore(ctx context.Context, rawURL string, lim swarmLimits) (*redisStore, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store URL: %w", err)
	}
	// Handlers bound each call with their context's deadline.
	opt.ContextTimeoutEnabled = true
	// Plain Redis has no maintenance notifications; asking for them only
	// logs a warning on every connection.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	s := &redisStore{rdb: redis.NewClient(opt), lim: lim}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("store %s: %w", opt.Addr, err), s.rdb.Close())
	}
	return s, nil
}

func (s *redisStore) Register(ctx context.Context, fi *fileinfo.Info) (*fileinfo.Info, error) {
	b, err := json.Marshal(fi)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", fi.Path, err)
	}
	v, err := registerScript.Run(ctx, s.rdb, []string{keyFiles, keyPaths, keyRefs},
		fi.Path, b, fi.InfoHash, redisPrefix+"s:").Text()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("register %s: %w", fi.Path, err)
	}
	return decodeInfo(fi.Path, v)
}

func (s *redisStore) Lookup(ctx context.Context, p string) (*fileinfo.Info, error) {
	v, err := s.rdb.HGet(ctx, keyFiles, p).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("look up %s: %w", p, errNotFound)
	case err != nil:
		return nil, fmt.Errorf("look up %s: %w", p, err)
	}
	return decodeInfo(p, v)
}

func (s *redisStore) Files(ctx context.Context) ([]*fileinfo.Info, error) {
	all, err := s.rdb.HGetAll(ctx, keyFiles).Result()
	if err != nil {
		return nil, fmt.Errorf("list files: %w", err)
	}
	out := make([]*fileinfo.Info, 0, len(all))
	for p, v := range all {
		fi, err := decodeInfo(p, v)
		if err != nil {
			return nil, err
		}
		out = append(out, fi)
	}
	slices.SortFunc(out, func(a, b *fileinfo.Info) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

func decodeInfo(p, v string) (*fileinfo.Info, error) {
	fi := new(fileinfo.Info)
	if err := json.Unmarshal([]byte(v), fi); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", p, err)
	}
	return fi, nil
}

func (s *redisStore) Announce(ctx context.Context, a *Announce) (announceResult, bool, error) {
	var res announceResult
	h := hex.EncodeToString(a.InfoHash[:])
	complete := "0"
	if a.Left == 0 {
		complete = "1"
	}
	want := 0
	if a.NumWant > 0 {
		want = a.NumWant + 1 // the announcing peer may be among them
	}
	v, err := announceScript.Run(ctx, s.rdb, append(swarmKeys(h), keyPasskeys), h, encodePeerKey(a.PeerID, a.Addr.Addr()),
		complete, a.Addr.String(), string(a.Event), s.lim.ttl.Milliseconds(), s.lim.perSwarm, want,
		hex.EncodeToString(a.Cred[:]), s.lim.perAddr).Slice()
	switch {
	case errors.Is(err, redis.Nil):
		return res, false, nil
	case err != nil:
		return res, false, fmt.Errorf("announce %s: %w", h, err)
	case len(v) == 1:
		return res, false, errUnknownPasskey
	case len(v) != 4:
		return res, false, fmt.Errorf("announce %s: answer of %d values", h, len(v))
	}
	res.complete, res.incomplete, res.listed = toInt(v[0]), toInt(v[1]), toInt(v[3]) == 1
	cand, err := decodePeers(v[2])
	if err != nil {
		return res, false, fmt.Errorf("announce %s: %w", h, err)
	}
	res.peers = pickAnswer(cand, a.PeerID, a.NumWant)
	return res, true, nil
}

// readSwarm runs swarmScript for h; ok is false when h is not registered.
func (s *redisStore) readSwarm(ctx context.Context, h [20]byte, want int) (sc scrapeCounts, peers []peer, ok bool, err error) {
	hh := hex.EncodeToString(h[:])
	v, err := swarmScript.Run(ctx, s.rdb, swarmKeys(hh), hh, s.lim.ttl.Milliseconds(), want).Slice()
	switch {
	case errors.Is(err, redis.Nil):
		return sc, nil, false, nil
	case err != nil:
		return sc, nil, false, fmt.Errorf("swarm %s: %w", hh, err)
	}
	if len(v) != 4 {
		return sc, nil, false, fmt.Errorf("swarm %s: answer of %d values", hh, len(v))
	}
	sc = scrapeCounts{complete: toInt(v[0]), incomplete: toInt(v[1]), downloaded: toInt(v[2])}
	peers, err = decodePeers(v[3])
	if err != nil {
		return sc, nil, false, fmt.Errorf("swarm %s: %w", hh, err)
	}
	return sc, peers, true, nil
}

func (s *redisStore) Peers(ctx context.Context, h [20]byte, n int) ([]peer, error) {
	_, peers, _, err := s.readSwarm(ctx, h, n)
	return peers, err
}

func (s *redisStore) Scrape(ctx context.Context, h [20]byte) (scrapeCounts, bool, error) {
	sc, _, ok, err := s.readSwarm(ctx, h, 0)
	return sc, ok, err
}

// Sweep expires every swarm, one pipelined script each. Every replica
// sweeps; the scripts make that harmless.
func (s *redisStore) Sweep(ctx context.Context) (storeStats, error) {
	var st storeStats
	err := s.eachSwarm(ctx, swarmScript, func(h string) []any { return []any{h, s.lim.ttl.Milliseconds(), 0} },
		func(v []any) {
			if len(v) == 4 {
				st.peers += toInt(v[0]) + toInt(v[1])
			}
		})
	if err != nil {
		return st, fmt.Errorf("sweep: %w", err)
	}
	n, err := s.rdb.HLen(ctx, keyFiles).Result()
	if err != nil {
		return st, fmt.Errorf("sweep: %w", err)
	}
	st.files = int(n)
	return st, nil
}

// eachSwarm runs script on every swarm, pipelined, with the arguments
// args gives for its hex infohash, and hands each answer to got.
func (s *redisStore) eachSwarm(ctx context.Context, script *redis.Script, args func(h string) []any, got func([]any)) error {
	hashes, err := s.rdb.HKeys(ctx, keyRefs).Result()
	if err != nil {
		return err
	}
	// Loaded once here, so that the pipelines can use EVALSHA even after
	// Redis restarted and forgot its scripts.
	if err := script.Load(ctx, s.rdb).Err(); err != nil {
		return err
	}
	for chunk := range slices.Chunk(hashes, 500) {
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, h := range chunk {
				script.EvalSha(ctx, p, swarmKeys(h), args(h)...)
			}
			return nil
		})
		// A swarm released meanwhile answers nil, which is no error here.
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, c := range cmds {
			if v, err := c.(*redis.Cmd).Slice(); err == nil {
				got(v)
			}
		}
	}
	return nil
}

func (s *redisStore) AddPasskey(ctx context.Context, c Credential) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode passkey %s: %w", c.Name, err)
	}
	if err := s.rdb.HSet(ctx, keyPasskeys, hex.EncodeToString(c.ID[:]), b).Err(); err != nil {
		return fmt.Errorf("store passkey %s: %w", c.Name, err)
	}
	return nil
}

func (s *redisStore) Passkey(ctx context.Context, id credID) (Credential, bool, error) {
	v, err := s.rdb.HGet(ctx, keyPasskeys, hex.EncodeToString(id[:])).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return Credential{}, false, nil
	case err != nil:
		return Credential{}, false, fmt.Errorf("look up passkey: %w", err)
	}
	c, err := decodeCredential(hex.EncodeToString(id[:]), v)
	return c, err == nil, err
}

func (s *redisStore) Passkeys(ctx context.Context) ([]Credential, error) {
	all, err := s.rdb.HGetAll(ctx, keyPasskeys).Result()
	if err != nil {
		return nil, fmt.Errorf("list passkeys: %w", err)
	}
	out := make([]Credential, 0, len(all))
	for id, v := range all {
		c, err := decodeCredential(id, v)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Credential) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func decodeCredential(id, v string) (Credential, error) {
	var c Credential
	b, err := hex.DecodeString(id)
	if err == nil && len(b) == len(c.ID) {
		err = json.Unmarshal([]byte(v), &c)
	}
	if err != nil || len(b) != len(c.ID) {
		return c, fmt.Errorf("decode stored passkey %q: %v", id, err)
	}
	c.ID = credID(b)
	return c, nil
}

// Revoke removes the name's credentials in one script, so that every
// replica refuses their announces from then on, then drops their peers
// swarm by swarm.
func (s *redisStore) Revoke(ctx context.Context, name string) (int, error) {
	ids, err := revokeScript.Run(ctx, s.rdb, []string{keyPasskeys}, name).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("revoke %s: %w", name, err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	if err := s.eachSwarm(ctx, dropScript, func(string) []any { return args }, func([]any) {}); err != nil {
		return len(ids), fmt.Errorf("revoke %s: drop its peers: %w", name, err)
	}
	return len(ids), nil
}

func (s *redisStore) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

func (s *redisStore) Close() error {
	s.closeOnce.Do(func() {
		if err := s.rdb.Close(); err != nil {
			s.closeErr = fmt.Errorf("close redis: %w", err)
		}
	})
	return s.closeErr
}

// encodePeerKey is peerKey as a Redis member: the id's 20 bytes, then the
// IP's 4 or 16.
func encodePeerKey(id [20]byte, ip netip.Addr) string {
	return string(id[:]) + string(ip.AsSlice())
}

// decodePeers reads a script's {peer, value, ...} list.
func decodePeers(v any) ([]peer, error) {
	flat, ok := v.([]any)
	if !ok || len(flat)%2 != 0 {
		return nil, fmt.Errorf("peer list of type %T", v)
	}
	out := make([]peer, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		k, _ := flat[i].(string)
		val, _ := flat[i+1].(string)
		// The value: complete flag, the owner's 64 hex digits, address.
		if len(k) < 20 || len(val) < 66 {
			return nil, fmt.Errorf("stored peer %q: %q", k, val)
		}
		ap, err := netip.ParseAddrPort(val[65:])
		if err != nil {
			return nil, fmt.Errorf("stored peer address %q: %w", val[65:], err)
		}
		out = append(out, peer{id: [20]byte([]byte(k[:20])), addr: ap, complete: val[0] == '1'})
	}
	return out, nil
}

// toInt reads a script's integer; anything else counts as 0.
func toInt(v any) int {
	n, _ := v.(int64)
	return int(n)
}
