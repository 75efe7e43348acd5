// The p2sp player page. It talks only to this proxy: /v1/catalog and
// /v1/lists/* are relayed to the origin with the user's credential,
// /stream/{path} plays, /v1/status says where the bytes come from.
"use strict";

const PAGE = 20;
const AUDIO = /\.(mp3|m4a|aac|ogg|oga|opus|flac|wav)$/i;
// An HLS playlist plays through hls.js (Media Source Extensions), loaded
// on first use, or the browser's own HLS where there is no MSE.
const HLS = /\.m3u8$/i;
const $ = (id) => document.getElementById(id);

const state = {
  q: "", offset: 0, total: 0,
  lists: false,
  favorites: [], recent: [],
  current: null,   // path playing
  poll: null,
  hls: null,       // the hls.js player of the current playlist
};

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

function escapePath(p) { return p.split("/").map(encodeURIComponent).join("/"); }

// say shows a short message; it clears itself after a while.
function say(text) {
  $("message").textContent = text || "";
  clearTimeout(state.sayTimer);
  if (text) state.sayTimer = setTimeout(() => { $("message").textContent = ""; }, 8000);
}

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(url, opts);
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  if (resp.status === 204) return { resp, data: null };
  return { resp, data: await resp.json() };
}

function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function clock(s) {
  if (!s) return "";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

// --- catalog ---

async function loadCatalog() {
  const qs = new URLSearchParams({ q: state.q, offset: state.offset, limit: PAGE });
  try {
    const { resp, data } = await api("GET", "/v1/catalog?" + qs);
    state.total = Number(resp.headers.get("X-Total-Count") || data.length);
    renderCatalog(data);
  } catch (e) {
    say("Cannot load the catalog: " + e.message);
  }
}

function renderCatalog(entries) {
  const ul = $("catalog");
  ul.replaceChildren();
  for (const e of entries) {
    const meta = [e.content_type, bytes(e.size), clock(e.duration)].filter(Boolean).join(" · ");
    const play = el("button", { type: "button", className: "play primary", textContent: "Play" });
    play.setAttribute("aria-label", "Play " + e.path);
    play.addEventListener("click", () => playPath(e.path));
    const li = el("li", {}, el("span", { className: "name", textContent: e.path }), play);
    li.dataset.path = e.path;
    if (state.lists) {
      const fav = el("button", { type: "button", className: "fav", textContent: "★ Favourite" });
      fav.setAttribute("aria-label", "Favourite " + e.path);
      fav.addEventListener("click", () => toggleFavorite(e.path));
      li.append(fav);
    }
    li.append(el("span", { className: "meta", textContent: meta }));
    ul.append(li);
  }
  const first = entries.length ? state.offset + 1 : 0;
  $("catalog-count").textContent = state.q
    ? `${state.total} match${state.total === 1 ? "" : "es"} for “${state.q}”`
    : `${state.total} file${state.total === 1 ? "" : "s"}`;
  $("page").textContent = `${first}–${state.offset + entries.length} of ${state.total}`;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE >= state.total;
  markCatalog();
}

// markCatalog updates the favourite toggles and the playing row.
function markCatalog() {
  const favs = new Set(state.favorites.map((f) => f.path));
  for (const li of $("catalog").children) {
    const p = li.dataset.path;
    li.classList.toggle("playing", p === state.current);
    const b = li.querySelector("button.fav");
    if (b) {
      const on = favs.has(p);
      b.setAttribute("aria-pressed", String(on));
      b.textContent = on ? "★ Favourite" : "☆ Favourite";
    }
  }
}

// --- lists ---

async function loadLists() {
  if (!state.lists) return;
  try {
    state.favorites = (await api("GET", "/v1/lists/favorites")).data.favorites;
    state.recent = (await api("GET", "/v1/lists/recent")).data.recent;
  } catch (e) {
    say("Cannot load your lists: " + e.message);
  }
  renderFavorites();
  renderRecent();
  markCatalog();
}

async function saveFavorites(list) {
  try {
    state.favorites = (await api("PUT", "/v1/lists/favorites", { favorites: list })).data.favorites;
  } catch (e) {
    say("Cannot save favourites: " + e.message);
  }
  renderFavorites();
  markCatalog();
}

async function toggleFavorite(path) {
  try {
    if (state.favorites.some((f) => f.path === path)) {
      await api("DELETE", "/v1/lists/favorites/" + escapePath(path));
      state.favorites = state.favorites.filter((f) => f.path !== path);
      say(`Removed ${path} from favourites.`);
    } else {
      state.favorites = (await api("POST", "/v1/lists/favorites", { path })).data.favorites;
      say(`Added ${path} to favourites.`);
    }
  } catch (e) {
    say("Cannot change favourites: " + e.message);
  }
  renderFavorites();
  markCatalog();
}

function move(i, by) {
  const list = state.favorites.map((f) => ({ path: f.path, group: f.group || "" }));
  const j = i + by;
  if (j < 0 || j >= list.length) return;
  [list[i], list[j]] = [list[j], list[i]];
  saveFavorites(list).then(() => {
    const b = document.querySelector(`#favorites li[data-index="${j}"] button.${by < 0 ? "up" : "down"}`);
    if (b && !b.disabled) b.focus();
  });
}

function renderFavorites() {
  const box = $("favorites");
  box.replaceChildren();
  if (!state.lists) {
    box.append(el("p", { className: "hint", textContent: "No user configured on this proxy: start it with --user and --user-token-file to keep favourites." }));
    return;
  }
  if (!state.favorites.length) {
    box.append(el("p", { className: "hint", textContent: "No favourites yet." }));
    return;
  }
  // Favourites keep their order; a group is shown where its first member is.
  const groups = new Map();
  state.favorites.forEach((f, i) => {
    const g = f.group || "";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push([f, i]);
  });
  for (const [g, members] of groups) {
    const ul = el("ul", { className: "items" });
    const div = el("div", { className: "group" });
    if (groups.size > 1 || g) div.append(el("h3", { textContent: g || "No group" }));
    div.append(ul);
    for (const [f, i] of members) {
      const li = el("li", {}, el("span", { className: "name", textContent: f.path }));
      li.dataset.index = i;
      li.dataset.path = f.path;
      const btn = (cls, text, label, fn) => {
        const b = el("button", { type: "button", className: cls, textContent: text });
        b.setAttribute("aria-label", label);
        b.addEventListener("click", fn);
        li.append(b);
        return b;
      };
      btn("play", "Play", "Play " + f.path, () => playPath(f.path));
      btn("up", "↑", "Move " + f.path + " up", () => move(i, -1)).disabled = i === 0;
      btn("down", "↓", "Move " + f.path + " down", () => move(i, +1)).disabled = i === state.favorites.length - 1;
      btn("remove", "Remove", "Remove " + f.path + " from favourites", () => toggleFavorite(f.path));
      const input = el("input", { type: "text", value: f.group || "", placeholder: "group", maxLength: 64 });
      input.setAttribute("aria-label", "Group of " + f.path);
      input.addEventListener("change", () => {
        const list = state.favorites.map((x) => ({ path: x.path, group: x.path === f.path ? input.value.trim() : (x.group || "") }));
        saveFavorites(list);
      });
      li.append(input);
      ul.append(li);
    }
    box.append(div);
  }
}

function renderRecent() {
  const ol = $("recent");
  ol.replaceChildren();
  if (!state.lists) return;
  if (!state.recent.length) {
    ol.append(el("li", { className: "hint", textContent: "Nothing played yet." }));
    return;
  }
  for (const r of state.recent.slice(0, 20)) {
    const when = new Date(r.played_at);
    const b = el("button", { type: "button", className: "play", textContent: "Play" });
    b.setAttribute("aria-label", "Play " + r.path + " again");
    b.addEventListener("click", () => playPath(r.path));
    const li = el("li", {}, el("span", { className: "name", textContent: r.path }), b,
      el("span", { className: "meta" }, el("time", { dateTime: r.played_at, textContent: when.toLocaleString() })));
    li.dataset.path = r.path;
    ol.append(li);
  }
}

async function recordPlay(path) {
  if (!state.lists) return;
  try {
    state.recent = (await api("POST", "/v1/lists/recent", { path })).data.recent;
    renderRecent();
  } catch (e) {
    say("Cannot record the play: " + e.message);
  }
}

// --- player ---

// loadHls loads the vendored hls.js once.
function loadHls() {
  if (!state.hlsLoaded) {
    state.hlsLoaded = new Promise((resolve, reject) => {
      const s = el("script", { src: "/ui/hls.light.min.js" });
      s.onload = () => resolve(window.Hls);
      s.onerror = () => reject(new Error("cannot load hls.js"));
      document.head.append(s);
    });
  }
  return state.hlsLoaded;
}

// attach points media at the stream of path: a file directly, a playlist
// through hls.js where the browser has Media Source Extensions.
async function attach(media, path) {
  const url = "/stream/" + escapePath(path);
  if (!HLS.test(path) || !window.MediaSource) {
    media.src = url;
    return;
  }
  let Hls;
  try {
    Hls = await loadHls();
  } catch (e) {
    showProblem(e.message);
    return;
  }
  if (!Hls || !Hls.isSupported() || state.current !== path) {
    if (state.current === path) media.src = url;
    return;
  }
  // No worker: the page's policy allows scripts of its own origin only.
  const hls = new Hls({ enableWorker: false });
  hls.on(Hls.Events.ERROR, (_, d) => {
    if (d.fatal) showProblem(`The player could not play ${path}: ${d.details}.`);
  });
  hls.loadSource(url);
  hls.attachMedia(media);
  state.hls = hls;
}

function playPath(path) {
  const tag = AUDIO.test(path) ? "audio" : "video";
  if (state.hls) {
    state.hls.destroy();
    state.hls = null;
  }
  const media = el(tag, { controls: true, autoplay: true, preload: "auto" });
  media.id = "media";
  media.setAttribute("aria-label", "Player: " + path);
  let recorded = false;
  media.addEventListener("playing", () => {
    if (!recorded) { recorded = true; recordPlay(path); }
  });
  media.addEventListener("error", () => {
    const err = media.error;
    showProblem(`The player could not play ${path}${err && err.message ? ": " + err.message : ""}.`);
  });
  $("player").replaceChildren(media);
  $("now").textContent = path;
  state.current = path;
  state.seenError = "";
  showProblem("");
  markCatalog();
  resetStats();
  clearInterval(state.poll);
  state.poll = setInterval(pollStatus, 1000);
  pollStatus();
  attach(media, path).then(() => media.play()).catch(() => { /* autoplay refused: the controls are there */ });
}

function showProblem(text) {
  const p = $("verify-error");
  p.textContent = text;
  p.hidden = !text;
}

function resetStats() {
  for (const id of ["st-cache", "st-peers", "st-origin", "st-pieces", "st-peer-count", "st-verify"]) $(id).textContent = "–";
  for (const s of $("source-bar").children) s.style.width = "0";
  drawPieces("");
}

// An error that only says the player hung up (a seek aborts the running
// request) is no problem with the file.
const HANGUP = /context canceled|broken pipe|connection reset|client disconnected/i;

async function pollStatus() {
  if (!state.current) return;
  let st;
  try {
    st = (await api("GET", "/v1/status?pieces=1")).data;
  } catch (e) {
    return;
  }
  const f = (st.files || []).find((x) => x.path === state.current);
  if (!f) return;
  const all = f.cache_bytes + f.peer_bytes + f.origin_bytes;
  const pct = (n) => (all ? Math.round((100 * n) / all) : 0);
  $("st-cache").textContent = `${bytes(f.cache_bytes)} (${pct(f.cache_bytes)}%)`;
  $("st-peers").textContent = `${bytes(f.peer_bytes)} (${pct(f.peer_bytes)}%)`;
  $("st-origin").textContent = `${bytes(f.origin_bytes)} (${pct(f.origin_bytes)}%)`;
  const [c, p, o] = $("source-bar").children;
  c.style.width = pct(f.cache_bytes) + "%";
  p.style.width = pct(f.peer_bytes) + "%";
  o.style.width = pct(f.origin_bytes) + "%";
  $("st-pieces").textContent = f.pieces_total
    ? `${f.pieces_held} / ${f.pieces_total}${f.complete ? " (complete)" : ""}` : "–";
  $("st-peer-count").textContent = String(f.peers);
  $("st-verify").textContent = String(f.verification_failures);
  drawPieces(f.pieces || "");
  if (f.error && !HANGUP.test(f.error) && f.error !== state.seenError) {
    state.seenError = f.error;
    showProblem(`This file failed verification or could not be fetched: ${f.error}. ` +
      "The proxy refused the bad data; the file is being fetched again.");
  }
}

function drawPieces(pieces) {
  const cv = $("pieces");
  const ctx = cv.getContext("2d");
  ctx.clearRect(0, 0, cv.width, cv.height);
  if (!pieces) { cv.setAttribute("aria-label", "Pieces held: none yet"); return; }
  const w = cv.width / pieces.length;
  ctx.fillStyle = "#2e8b57";
  let held = 0;
  for (let i = 0; i < pieces.length; i++) {
    if (pieces[i] === "1") { held++; ctx.fillRect(Math.floor(i * w), 0, Math.ceil(w), cv.height); }
  }
  cv.setAttribute("aria-label", `Pieces held: ${held} of ${pieces.length}`);
}

// --- start ---

async function main() {
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.q = $("search").value.trim();
    state.offset = 0;
    loadCatalog();
  });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadCatalog(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadCatalog(); });
  try {
    const me = (await api("GET", "/v1/me")).data;
    state.lists = me.lists;
    $("user").textContent = me.lists ? "Signed in as " + me.user : "No user: favourites and recent plays are off";
  } catch (e) {
    say("Cannot reach the proxy: " + e.message);
  }
  await loadLists();
  await loadCatalog();
  document.body.dataset.ready = "1";
}

main();
