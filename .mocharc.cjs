module.exports = {
  'node-option': ['import=tsx'],
  require: ['test/support/hooks.ts'],
  timeout: 60000,
  slow: 2000,
  forbidOnly: Boolean(process.env.CI),
  exit: false,
};
