// tinyclip search page: plain JavaScript, no build step, no external resources.
"use strict";

const $ = (id) => document.getElementById(id);
let queryImage = null; // data: URL of the dropped or chosen image
let apiKey = sessionStorage.getItem("tinyclip-api-key") || "";
const blobURLs = [];

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", !!isError);
}

function authHeaders(h) {
  h = h || {};
  if (apiKey) h["Authorization"] = "Bearer " + apiKey;
  return h;
}

// api calls the JSON API; a 401 shows the API key field.
async function api(path, body) {
  const opts = body === undefined
    ? { headers: authHeaders() }
    : { method: "POST", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body) };
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  if (resp.status === 401) {
    $("keyrow").hidden = false;
    $("key").focus();
    throw new Error("this server needs an API key");
  }
  if (!resp.ok) {
    throw new Error((data && data.error && data.error.message) || ("HTTP " + resp.status));
  }
  return data;
}

async function loadInfo() {
  try {
    const info = await api("v1/index");
    $("info").textContent = info.images + " images · model " + info.model + " (" + info.dim + "-d)";
  } catch (e) {
    $("info").textContent = "";
  }
}

// showImage sets an <img> to a thumbnail URL; with an API key the image is
// fetched with the Authorization header and shown from a blob: URL.
async function showImage(img, url) {
  if (!apiKey) {
    img.src = url;
    return;
  }
  const resp = await fetch(url, { headers: authHeaders() });
  if (!resp.ok) return;
  const u = URL.createObjectURL(await resp.blob());
  blobURLs.push(u);
  img.src = u;
}

function render(results) {
  while (blobURLs.length) URL.revokeObjectURL(blobURLs.pop());
  const grid = $("results");
  grid.textContent = "";
  for (const r of results) {
    const fig = document.createElement("figure");
    fig.className = "hit";
    fig.dataset.path = r.path;
    fig.dataset.score = String(r.score);
    const a = document.createElement("a");
    a.href = "v1/image?path=" + encodeURIComponent(r.path);
    a.target = "_blank";
    a.rel = "noopener";
    const img = document.createElement("img");
    img.alt = r.path;
    img.decoding = "async";
    a.appendChild(img);
    const cap = document.createElement("figcaption");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(3);
    const name = document.createElement("span");
    name.className = "name";
    name.title = r.path;
    name.textContent = r.path.split(/[\\/]/).pop();
    cap.append(score, name);
    fig.append(a, cap);
    grid.appendChild(fig);
    showImage(img, "v1/thumbnail?path=" + encodeURIComponent(r.path));
  }
}

async function search() {
  const text = $("q").value.trim();
  if (!text && !queryImage) {
    setStatus("Type a query or drop an image.", true);
    return;
  }
  const k = parseInt($("k").value, 10) || 20;
  const body = { k: k };
  if (text) body.text = text;
  if (queryImage) body.image = queryImage;
  setStatus("Searching…");
  $("go").disabled = true;
  try {
    const res = await api("v1/search", body);
    render(res.results);
    setStatus(res.results.length + " results in " + res.took_ms.toFixed(1) + " ms");
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    $("go").disabled = false;
  }
}

function useFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    setStatus(file.name + " is not an image", true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    queryImage = reader.result;
    $("preview").src = queryImage;
    $("chosenname").textContent = file.name;
    $("chosen").hidden = false;
    $("drophint").hidden = true;
    search();
  };
  reader.onerror = () => setStatus("cannot read " + file.name, true);
  reader.readAsDataURL(file);
}

function clearImage() {
  queryImage = null;
  $("file").value = "";
  $("chosen").hidden = true;
  $("drophint").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
  $("file").addEventListener("change", () => useFile($("file").files[0]));
  $("clear").addEventListener("click", clearImage);
  $("savekey").addEventListener("click", () => {
    apiKey = $("key").value;
    sessionStorage.setItem("tinyclip-api-key", apiKey);
    $("keyrow").hidden = true;
    loadInfo();
    search();
  });
  const drop = $("drop");
  document.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer && ev.dataTransfer.files.length) useFile(ev.dataTransfer.files[0]);
  });
  loadInfo();
});
