// esarm's 3D face viewer (see viewer.html): GLB faces with 52 ARKit morph targets, animated by the GLB's
// morph-weights animation, with the audio element as the clock so that lips and speech stay together.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

const SKIN = 0xdbb39a;
const BACKGROUND = 0x1e2026;
const GAP = 1.15; // faces side by side are this many face widths apart

const params = new URLSearchParams(window.location.search);
const stage = document.getElementById('stage');
const labelsBox = document.getElementById('labels');
const playButton = document.getElementById('play');
const seek = document.getElementById('seek');
const timeText = document.getElementById('time');
const statusText = document.getElementById('status');
const audio = document.getElementById('audio');

// Served by Gradio's file route (".../file=/path/viewer.html"), a bare file path becomes a URL of that same route.
function resolveUrl(value) {
  if (/^(https?:|blob:|data:)/.test(value)) return value;
  const path = window.location.pathname;
  const marker = path.indexOf('/file=');
  if (marker >= 0) return path.slice(0, marker + '/file='.length) + value;
  return new URL(value, window.location.href).href;
}

const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
stage.prepend(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(BACKGROUND);
scene.add(new THREE.HemisphereLight(0xffffff, 0x404048, 1.1));
const key = new THREE.DirectionalLight(0xffffff, 1.6);
key.position.set(0.35, 0.45, 1.0);
scene.add(key);
const camera = new THREE.PerspectiveCamera(28, 1, 0.001, 100);
const controls = new OrbitControls(camera, renderer.domElement);
controls.enableDamping = true;
// Draw only when something moved: without a GPU (WebGL on Chromium's software rasteriser) one frame of this
// 9409-vertex, 52-target face costs tens of milliseconds of CPU, which an idle page should not spend.
let dirty = true;
controls.addEventListener('change', () => { dirty = true; });

const viewer = {
  state: 'loading', duration: 0, models: 0, frames: 0, mixers: [], meshes: [], clock: 'audio', error: null,
  // Sum of the morph-target weights currently applied to the first face: changes while the face moves.
  influenceSum() {
    const mesh = this.meshes[0];
    return mesh ? mesh.morphTargetInfluences.reduce((a, b) => a + b, 0) : 0;
  },
  time() { return currentTime(); },
  playing() { return isPlaying(); },
};
window.esarmViewer = viewer;

function setState(state, message = '') {
  viewer.state = state;
  document.body.dataset.state = state;
  statusText.textContent = message;
}

// The clock: the audio's position while it plays; a wall clock when the page cannot play sound (no output
// device, autoplay refused) so that the face still moves.
let wallStart = null;
// What the user asked for last: a pause while audio.play() is still pending must win over that promise's outcome.
let wantPlaying = false;
let wallOffset = 0;
function currentTime() {
  if (viewer.clock === 'wall') {
    const t = wallStart === null ? wallOffset : wallOffset + (performance.now() - wallStart) / 1000;
    if (t >= viewer.duration && wallStart !== null) { wallOffset = viewer.duration; wallStart = null; wantPlaying = false; showPlaying(false); }
    return Math.min(t, viewer.duration);
  }
  return audio.currentTime || 0;
}
function isPlaying() { return viewer.clock === 'wall' ? wallStart !== null : !audio.paused && !audio.ended; }
function showPlaying(playing) { playButton.textContent = playing ? '❚❚ Pause' : '▶ Play'; }

async function play() {
  wantPlaying = true;
  if (currentTime() >= viewer.duration - 1e-3) seekTo(0);
  if (viewer.clock === 'audio' && audio.src) {
    try {
      await audio.play();
      if (!wantPlaying) { audio.pause(); return; }
      showPlaying(true);
      return;
    } catch (error) {
      if (error.name === 'AbortError' || !wantPlaying) return; // paused (or seeked) before the sound started
      viewer.clock = 'wall';
      wallOffset = audio.currentTime || 0;
      statusText.textContent = `sound unavailable (${error.name}): playing without it`;
    }
  }
  viewer.clock = 'wall';
  wallStart = performance.now();
  showPlaying(true);
}
function pause() {
  wantPlaying = false;
  if (viewer.clock === 'wall') { wallOffset = currentTime(); wallStart = null; } else { audio.pause(); }
  showPlaying(false);
}
function seekTo(t) {
  dirty = true;
  t = Math.max(0, Math.min(t, viewer.duration));
  if (viewer.clock === 'wall') { wallOffset = t; if (wallStart !== null) wallStart = performance.now(); }
  if (audio.src) audio.currentTime = t;
}
playButton.addEventListener('click', () => (isPlaying() || wantPlaying ? pause() : play()));
seek.addEventListener('input', () => seekTo(Number(seek.value) * viewer.duration));
audio.addEventListener('ended', () => { wantPlaying = false; showPlaying(false); });

function resize() {
  const width = stage.clientWidth, height = stage.clientHeight;
  if (!width || !height) return;
  renderer.setSize(width, height, false);
  camera.aspect = width / height;
  camera.updateProjectionMatrix();
  dirty = true;
}
new ResizeObserver(resize).observe(stage);

function placeLabel(text, position) {
  const span = document.createElement('span');
  span.textContent = text;
  labelsBox.appendChild(span);
  return { span, position };
}

async function load() {
  const models = params.getAll('model');
  const labels = params.getAll('label');
  if (!models.length) throw new Error('no model given: open the viewer with ?model=<file.glb>');
  const loader = new GLTFLoader();
  const gltfs = await Promise.all(models.map((m) => loader.loadAsync(resolveUrl(m))));
  const material = new THREE.MeshStandardMaterial({ color: SKIN, roughness: 0.62, metalness: 0.0 });
  let width = 0;
  const placed = [];
  gltfs.forEach((gltf, i) => {
    let face = null;
    gltf.scene.traverse((node) => { if (!face && node.isMesh && node.morphTargetInfluences) face = node; });
    if (!face) throw new Error(`${models[i]} has no mesh with morph targets`);
    face.material = material;
    face.geometry.computeVertexNormals();
    const box = new THREE.Box3().setFromObject(gltf.scene);
    width = Math.max(width, box.max.x - box.min.x);
    if (!gltf.animations.length) throw new Error(`${models[i]} has no animation`);
    const mixer = new THREE.AnimationMixer(gltf.scene);
    const action = mixer.clipAction(gltf.animations[0]);
    action.play();
    viewer.duration = Math.max(viewer.duration, gltf.animations[0].duration);
    viewer.mixers.push(mixer);
    viewer.meshes.push(face);
    placed.push(gltf.scene);
  });
  const labelAnchors = [];
  placed.forEach((object, i) => {
    object.position.x = (i - (placed.length - 1) / 2) * width * GAP;
    scene.add(object);
    if (labels[i]) {
      const box = new THREE.Box3().setFromObject(object);
      labelAnchors.push(placeLabel(labels[i], new THREE.Vector3((box.min.x + box.max.x) / 2, box.max.y, 0)));
    }
  });
  const box = new THREE.Box3();
  placed.forEach((object) => box.expandByObject(object));
  const centre = box.getCenter(new THREE.Vector3());
  const size = box.getSize(new THREE.Vector3());
  resize();
  const fov = THREE.MathUtils.degToRad(camera.fov);
  const fitHeight = size.y / (2 * Math.tan(fov / 2));
  const fitWidth = size.x / (2 * Math.tan(fov / 2) * camera.aspect);
  camera.position.set(centre.x, centre.y, box.max.z + 1.12 * Math.max(fitHeight, fitWidth));
  camera.near = size.length() / 100;
  camera.far = size.length() * 100;
  camera.updateProjectionMatrix();
  controls.target.copy(centre);
  controls.update();
  viewer.labels = labelAnchors;

  const audioSource = params.get('audio');
  if (audioSource) {
    audio.src = resolveUrl(audioSource);
    audio.load();
  } else {
    viewer.clock = 'wall';
  }
  viewer.models = placed.length;
  playButton.disabled = false;
}

const projected = new THREE.Vector3();
let shownTime = -1;
function frame() {
  requestAnimationFrame(frame);
  const t = currentTime();
  const moving = controls.update(); // true while the camera glides after a drag (damping)
  if (!dirty && !moving && t === shownTime) return;
  dirty = false;
  shownTime = t;
  // Hold the last frame at the end instead of wrapping around to the first.
  const clamped = Math.min(t, Math.max(0, viewer.duration - 1e-4));
  for (const mixer of viewer.mixers) mixer.setTime(clamped);
  seek.value = viewer.duration ? String(t / viewer.duration) : '0';
  timeText.textContent = `${t.toFixed(2)} / ${viewer.duration.toFixed(2)} s`;
  for (const { span, position } of viewer.labels || []) {
    projected.copy(position).project(camera);
    span.style.left = `${((projected.x + 1) / 2) * stage.clientWidth}px`;
  }
  renderer.render(scene, camera);
  viewer.frames += 1;
}

load()
  .then(() => { setState('ready'); requestAnimationFrame(frame); })
  .catch((error) => { viewer.error = String(error); setState('error', `could not load the animation: ${error.message || error}`); });
