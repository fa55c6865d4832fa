// Runs the real KFP UI server (its compiled app, unmodified) on 127.0.0.1 only.
//
//   node kfp_ui_server.mjs <server dist dir> <static dir> <port>
//
// KFP's own entry point (server.js) listens on every interface; the test stack keeps its
// servers on loopback, so this calls the same two exports server.js calls (loadConfigs,
// UIServer) and binds the Express app to 127.0.0.1 itself.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [dist, staticDir, port] = process.argv.slice(2);
if (!dist || !staticDir || !port) {
  console.error('usage: node kfp_ui_server.mjs <server dist dir> <static dir> <port>');
  process.exit(2);
}
const { UIServer } = await import(pathToFileURL(join(dist, 'app.js')).href);
const { loadConfigs } = await import(pathToFileURL(join(dist, 'configs.js')).href);

// loadConfigs reads the static folder and port from argv[2] and argv[3], as server.js gets them.
const configs = loadConfigs([process.argv[0], 'server.js', staticDir, port], process.env);
const ui = new UIServer(configs);
ui.httpServer = ui.app.listen(Number(port), '127.0.0.1', () => {
  console.log(`KFP UI listening at http://127.0.0.1:${port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => ui.httpServer.close(() => process.exit(0)));
}
