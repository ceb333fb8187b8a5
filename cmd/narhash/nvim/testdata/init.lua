-- Run by nvim_test.go: nvim --headless --clean -u testdata/init.lua, with
-- NARHASH_TEST_{PLUGIN,BIN,ROOT,OUT,VIEW,EDIT,TEXT,AFTER} set (and FIFO,
-- DAEMON, RETRY_MS for some tests). It loads the plugin, waits for
-- the statusline's hash, edits a file and writes it, waits for the new hash,
-- and writes what it saw to NARHASH_TEST_OUT as JSON. Every wait has a
-- deadline; none sleeps.
local env = vim.env
vim.opt.runtimepath:prepend(env.NARHASH_TEST_PLUGIN)
vim.cmd('runtime! plugin/narhash.lua')

local out = { steps = {} }
local deadline = 60000

local function step(name)
  local nh = require('narhash')
  local i = nh.info()
  table.insert(out.steps, {
    name = name,
    status = nh.status(),
    sri = nh.hash('sri') or '',
    nix32 = nh.hash('nix32') or '',
    base16 = nh.hash('base16') or '',
    source = i.source or '',
    view = i.view or '',
    note = i.note or '',
    err = i.err or '',
  })
end

-- wait_for waits until cond holds, polling every 5 ms up to the deadline,
-- or fails: "<what> within <deadline> ms", and the plugin's state.
local function wait_for(what, cond)
  if not vim.wait(deadline, cond, 5) then
    error(what .. ' within ' .. deadline .. ' ms: ' .. vim.inspect(require('narhash').info()))
  end
end

local daemon -- the job id of narhashd, when this script starts it
local ok, err = pcall(function()
  local nh = require('narhash')
  nh.setup({
    cmd = env.NARHASH_TEST_BIN,
    format = 'nix32',
    view = env.NARHASH_TEST_VIEW,
    retry_ms = tonumber(env.NARHASH_TEST_RETRY_MS or '0'),
  })
  nh.start(env.NARHASH_TEST_ROOT)
  wait_for('no hash', function()
    return nh.hash() ~= nil
  end)
  step('first')
  out.messages_before = vim.fn.execute('messages')
  if env.NARHASH_TEST_DAEMON then
    -- narhashd starts only now: the plugin's retry finds it and goes live.
    daemon = vim.fn.jobstart(vim.fn.json_decode(env.NARHASH_TEST_DAEMON))
    if daemon <= 0 then
      error('cannot start narhashd: ' .. env.NARHASH_TEST_DAEMON)
    end
    wait_for('the plugin did not find narhashd', function()
      return nh.info().source == 'daemon'
    end)
    step('daemon came')
  end

  -- :NarhashCopy and :NarhashInsert give the SRI hash.
  vim.cmd('NarhashCopy a')
  out.register = vim.fn.getreg('a')
  vim.cmd('enew')
  vim.cmd('NarhashInsert')
  out.inserted = vim.api.nvim_get_current_line()
  vim.cmd('bwipeout!')

  -- Edit a file of the project in this editor and write it.
  vim.cmd('edit ' .. vim.fn.fnameescape(env.NARHASH_TEST_ROOT .. '/' .. env.NARHASH_TEST_EDIT))
  vim.api.nvim_buf_set_lines(0, 0, -1, false, { env.NARHASH_TEST_TEXT })
  vim.cmd('write')
  -- The daemon may push the hash of a moment during the write (a backup
  -- file, an empty file) before the final one: wait for the final one.
  wait_for('after the write, the hash did not become ' .. env.NARHASH_TEST_AFTER, function()
    return nh.hash() == env.NARHASH_TEST_AFTER
  end)
  step('after write')
  if env.NARHASH_TEST_FIFO then
    -- A FIFO in the project: it cannot be hashed, and the statusline
    -- says so instead of the hash before; once the FIFO goes, the hash
    -- is back.
    local fifo = env.NARHASH_TEST_ROOT .. '/' .. env.NARHASH_TEST_FIFO
    vim.fn.system({ 'mkfifo', fifo })
    if vim.v.shell_error ~= 0 then
      error('mkfifo ' .. fifo .. ' failed')
    end
    wait_for('the plugin did not show the FIFO', function()
      return nh.info().note == 'error'
    end)
    out.fifo = { status = nh.status(), err = nh.info().err or '', hash = nh.hash() or '' }
    os.remove(fifo)
    wait_for('after the FIFO went, the hash did not come back', function()
      return nh.hash() == env.NARHASH_TEST_AFTER
    end)
    out.fifo.after = nh.hash()
  end
  if daemon then
    -- narhashd stops: the plugin falls back to the offline hash, quietly.
    vim.fn.jobstop(daemon)
    wait_for('the plugin did not notice narhashd stopped', function()
      return nh.info().source == 'offline' and nh.info().note == 'no daemon' and nh.hash() ~= nil
    end)
    step('daemon went')
  end
  out.messages = vim.fn.execute('messages')
end)
out.error = ok and '' or tostring(err)
vim.fn.writefile({ vim.fn.json_encode(out) }, env.NARHASH_TEST_OUT)
vim.cmd(ok and 'qall!' or 'cquit 1')
