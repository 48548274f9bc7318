// A real zerorpc-node 0.9.8 server for zrpc's interop tests.
//
// usage: node node_server.js ENDPOINT HEARTBEAT_MS [connect]
// ("connect": a worker of a client bound at ENDPOINT.)
// Prints READY once bound, then serves until killed. Every error the server
// reports is printed as a line starting with NODE-ERROR, so a test can
// check that zrpc caused none.
"use strict";
const zerorpc = require("zerorpc");

const [endpoint, heartbeat] = [process.argv[2], parseInt(process.argv[3], 10)];

const server = new zerorpc.Server(
  {
    add: function (a, b, reply) {
      reply(null, a + b);
    },
    echo: function (value, reply) {
      reply(null, value);
    },
    boom: function (message, reply) {
      const e = new Error(message);
      e.name = "ValueError";
      reply(e);
    },
    sleep: function (seconds, reply) {
      setTimeout(function () {
        reply(null, "slept " + seconds);
      }, seconds * 1000);
    },
    // A stream: reply(null, item, true) per item, then reply(null, undefined, false).
    count: function (n, reply) {
      let i = 0;
      const next = function () {
        if (i < n) {
          reply(null, i++, true);
          setImmediate(next);
        } else {
          reply(null, undefined, false);
        }
      };
      next();
    },
  },
  heartbeat
);
server.on("error", function (error) {
  console.log("NODE-ERROR " + (error && error.message ? error.message : error));
});
if (process.argv[4] === "connect") {
  server.connect(endpoint);
} else {
  server.bind(endpoint);
}
console.log("READY");
