module.exports = require("zeromq6/v5-compat");
