// An Express 5 app that routes on paths, for keygate's path battery
// (web/realapps_test.go). Each area answers with its own name, so the test
// sees which area the app actually served, whatever keygate decided.
// Express 5 routes case-insensitively by default ("/TWO/x" is served by the
// "/two" area): that default is kept on purpose, it is what apps run with.
'use strict';
const express = require('express');

const app = express();
app.disable('x-powered-by');

// Every answer the app gives carries this header, errors included, so the
// test can tell the app's own 404/400 from keygate's.
app.use((req, res, next) => {
  res.set('X-Realapp', 'express');
  next();
});

function area(name) {
  return (req, res) => {
    res.type('text/plain').send(`KG-REALAPP APP=express AREA=${name} URL=${req.originalUrl}\n`);
  };
}

for (const name of ['public', 'one', 'two', 'deny']) {
  app.use('/' + name, area(name));
}
// The reserved prefix is keygate's: the app must never be asked for it.
app.use('/.keygate', area('reserved'));
app.use(area('none'));

// Malformed requests (a bad percent escape): an answer from the app that
// belongs to no area.
app.use((err, req, res, next) => { // eslint-disable-line no-unused-vars
  res.status(400).type('text/plain').send('KG-REALAPP APP=express AREA=error\n');
});

const server = app.listen(0, '127.0.0.1', () => {
  // The test reads the port from this line.
  console.log(`PORT=${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
