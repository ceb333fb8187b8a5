-- narhash for Neovim: the Nix NAR hash of the project in the statusline,
-- kept current by narhashd's subscription stream, and commands to copy it
-- or insert it as SRI. Without narhashd it hashes in the background with
-- `narhash hash`, again after each write. See :help narhash.

local codec = require('narhash.codec')

local M = {}

local defaults = {
  cmd = 'narhash', -- the narhash binary: a name in $PATH or a path
  view = 'auto', -- 'auto': the git view in a git worktree, else the directory; 'git'; 'dir'
  format = 'sri', -- what status() shows: 'sri', 'nix32' or 'base16'
  abbrev = 0, -- characters of the hash status() shows; 0 shows all
  watch = true, -- ask narhashd to watch the project (it remembers it)
  socket = nil, -- narhashd's socket; nil: $NARHASHD_SOCKET, else the default
  root = nil, -- function returning the project directory; nil: the current directory
  retry_ms = 10000, -- try the daemon again this long after it went away
  register = nil, -- :NarhashCopy's register; nil: '+' with a clipboard, else '"'
}

local config = vim.deepcopy(defaults)

-- The state of the current project. gen changes on every (re)start, so
-- that callbacks of jobs from before ignore themselves.
local state = {
  gen = 0,
  root = nil,
  git = false, -- the git view is shown
  hash = nil, -- SRI
  source = nil, -- 'daemon' or 'offline'
  note = nil, -- why offline: 'no daemon', 'git view offline', or an error
  err = nil, -- the last error, for :NarhashStatus
  stream = nil, -- job id of `narhash subscribe`
  offline = nil, -- job id of `narhash hash`
  stale = false, -- a write happened while `narhash hash` ran
  caps = nil, -- what the binary supports: { subscribe_git, hash_git }
  timer = nil,
}

local function socket_args()
  if config.socket then
    return { '--socket', config.socket }
  end
  return {}
end

local function redraw()
  pcall(vim.cmd, 'redrawstatus!')
end

local function trim(lines)
  return vim.trim(table.concat(lines or {}, '\n'))
end

-- job starts cmd and calls done(code, stdout, stderr) on the main loop;
-- nothing blocks. It returns the job id, or nil when cmd cannot start.
local function job(cmd, done)
  local out, err = {}, {}
  local ok, id = pcall(vim.fn.jobstart, cmd, {
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = function(_, data)
      out = data
    end,
    on_stderr = function(_, data)
      err = data
    end,
    on_exit = function(_, code)
      done(code, trim(out), trim(err))
    end,
  })
  if not ok or id <= 0 then
    vim.schedule(function()
      done(-1, '', 'cannot run ' .. tostring(cmd[1]) .. ' (set cmd in require("narhash").setup{})')
    end)
    return nil
  end
  return id
end
local function in_git_worktree(dir)
  return vim.fn.finddir('.git', dir .. ';') ~= '' or vim.fn.findfile('.git', dir .. ';') ~= ''
end

local function stop_jobs()
  for _, k in ipairs({ 'stream', 'offline' }) do
    if state[k] then
      pcall(vim.fn.jobstop, state[k])
      state[k] = nil
    end
  end
  if state.timer then
    state.timer:stop()
    state.timer:close()
    state.timer = nil
  end
end

local follow -- forward

-- hash_offline hashes the project here, in the background: the answer
-- when the daemon cannot give it.
local function hash_offline(gen, note)
  if gen ~= state.gen then
    return
  end
  state.source, state.note = 'offline', note
  if state.offline then
    state.stale = true -- hash again when this one is done
    return
  end
  state.stale = false
  local cmd = { config.cmd, 'hash', '--format', 'sri' }
  if state.git then
    table.insert(cmd, '--git')
  end
  table.insert(cmd, state.root)
  state.offline = job(cmd, function(code, out, err)
    if gen ~= state.gen then
      return
    end
    state.offline = nil
    if code == 0 and out ~= '' then
      state.hash, state.err = out, nil
    else
      state.hash, state.err = nil, err ~= '' and err or ('narhash hash exited ' .. code)
    end
    redraw()
    if state.stale and state.source == 'offline' then
      hash_offline(gen, state.note)
    end
  end)
  redraw()
end

local function retry_later(gen)
  if config.retry_ms <= 0 or state.timer then
    return
  end
  state.timer = vim.loop.new_timer()
  state.timer:start(config.retry_ms, 0, vim.schedule_wrap(function()
    if state.timer then
      state.timer:close()
      state.timer = nil
    end
    if gen == state.gen and not state.stream then
      follow(gen)
    end
  end))
end

-- daemon_down: the daemon does not answer, or went away. The offline hash
-- is computed once, then again after writes (on_write), not on each retry.
local function daemon_down(gen, err)
  state.err = err
  if state.source ~= 'offline' or not state.hash then
    hash_offline(gen, 'no daemon')
  end
  retry_later(gen)
end

-- subscribe follows the project's hash on narhashd's stream: the first
-- line is the current hash, then one line per change.
local function subscribe(gen)
  if gen ~= state.gen then
    return
  end
  local cmd = { config.cmd, 'subscribe', '--format', 'sri' }
  vim.list_extend(cmd, socket_args())
  if state.git then
    table.insert(cmd, '--git')
  end
  table.insert(cmd, state.root)
  local partial, errlines = '', {}
  local ok, id = pcall(vim.fn.jobstart, cmd, {
    on_stdout = function(_, data)
      if gen ~= state.gen then
        return
      end
      -- data is the output split at newlines; its last item is the start
      -- of a line not yet ended.
      data[1] = partial .. data[1]
      partial = table.remove(data)
      for i = #data, 1, -1 do
        if data[i]:match('^sha256%-[%w+/=]+$') then
          state.hash, state.source, state.note, state.err = data[i], 'daemon', nil, nil
          redraw()
          break
        end
        -- A change left the project impossible to hash (a FIFO in it, an
        -- unreadable file): the hash shown before no longer describes
        -- it. The next hash line follows once a change mends it.
        local why = data[i]:match('^failed: (.*)$')
        if why then
          state.hash, state.source, state.note, state.err = nil, 'daemon', 'error', why
          redraw()
          break
        end
      end
    end,
    on_stderr = function(_, data)
      vim.list_extend(errlines, data)
    end,
    on_exit = function(_, code)
      if gen ~= state.gen then
        return
      end
      state.stream = nil
      local err = trim(errlines)
      if err == '' then
        err = 'narhash subscribe exited ' .. code
      end
      daemon_down(gen, err)
    end,
  })
  if not ok or id <= 0 then
    state.err = 'cannot run ' .. config.cmd .. ' (set cmd in require("narhash").setup{})'
    state.note = 'error'
    redraw()
    return
  end
  state.stream = id
end

-- follow starts on the project once the binary's abilities are known.
follow = function(gen)
  if state.git and not state.caps.subscribe_git then
    if state.caps.hash_git then
      -- This narhash has a git view offline only: correct, but not pushed.
      hash_offline(gen, 'git view offline')
      return
    end
    state.git = false
  end
  if not config.watch then
    subscribe(gen)
    return
  end
  local cmd = { config.cmd, 'watch', 'add' }
  vim.list_extend(cmd, socket_args())
  table.insert(cmd, state.root)
  job(cmd, function(code, _, err)
    if gen ~= state.gen then
      return
    end
    if code == 0 then
      subscribe(gen)
    elseif err:find('not running', 1, true) or err:find('nothing answers', 1, true) then
      daemon_down(gen, err)
    else
      -- Watching failed (say, the path is inside narhashd's own
      -- directory): the stream says why, or the offline hash answers.
      state.err = err
      subscribe(gen)
    end
  end)
end

-- probe learns which of --git the binary's subscribe and hash take.
local function probe(gen, done)
  if state.caps then
    done()
    return
  end
  local caps, pending = {}, 2
  for _, sub in ipairs({ 'subscribe', 'hash' }) do
    job({ config.cmd, sub, '--help' }, function(code, out, err)
      caps[sub .. '_git'] = code == 0 and (out .. err):find('--git', 1, true) ~= nil
      if code < 0 then
        caps.missing = err
      end
      pending = pending - 1
      if pending == 0 and gen == state.gen then
        state.caps = caps
        done()
      end
    end)
  end
end

--- start follows the hash of dir (default: the project directory).
function M.start(dir)
  stop_jobs()
  state.gen = state.gen + 1
  local gen = state.gen
  dir = dir or (config.root and config.root()) or vim.fn.getcwd()
  state.root = vim.fn.fnamemodify(dir, ':p'):gsub('(.)/$', '%1')
  state.hash, state.source, state.note, state.err = nil, nil, nil, nil
  if config.view == 'git' then
    state.git = true
  elseif config.view == 'dir' then
    state.git = false
  else
    state.git = in_git_worktree(state.root)
  end
  probe(gen, function()
    if state.caps.missing then
      state.err, state.note = state.caps.missing, 'error'
      redraw()
      return
    end
    follow(gen)
  end)
end

--- stop ends the jobs; status() shows nothing until the next start.
function M.stop()
  stop_jobs()
  state.gen = state.gen + 1
  state.root, state.hash = nil, nil
end

--- hash returns the current hash in format ('sri' unless given), or nil.
function M.hash(format)
  if not state.hash then
    return nil
  end
  return codec.convert(state.hash, format or 'sri')
end

--- status is a statusline component: the hash, and why it is not live.
function M.status()
  if not state.root then
    if state.gen == 0 then
      M.start() -- the first use starts it
    else
      return ''
    end
  end
  local s
  if state.hash then
    s = M.hash(config.format) or state.hash
    if config.abbrev > 0 and #s > config.abbrev then
      s = s:sub(1, config.abbrev) .. '…'
    end
  elseif state.note == 'error' then
    s = 'error'
  elseif state.err and state.source == 'offline' and not state.offline then
    s = 'cannot hash'
  else
    s = '…'
  end
  if state.source == 'offline' and state.note then
    s = s .. ' (' .. state.note .. ')'
  end
  return 'nar ' .. s
end

--- info describes the state, for :NarhashStatus and tests.
function M.info()
  return {
    root = state.root,
    view = state.git and 'git' or 'dir',
    hash = state.hash,
    source = state.source,
    note = state.note,
    err = state.err,
  }
end

--- on_write hashes again when the hash is not pushed by the daemon.
function M.on_write()
  if state.root and state.source == 'offline' then
    hash_offline(state.gen, state.note)
  end
end

--- on_dir_changed follows the new current directory, unless root is set.
function M.on_dir_changed()
  if state.root and not config.root then
    M.start()
  end
end

local function need_hash()
  local h = M.hash('sri')
  if not h then
    vim.notify('narhash: no hash yet for ' .. tostring(state.root) .. ' (see :NarhashStatus)', vim.log.levels.WARN)
  end
  return h
end

--- copy puts the SRI hash in register reg.
function M.copy(reg)
  local h = need_hash()
  if not h then
    return
  end
  if not reg or reg == '' then
    reg = config.register or (vim.fn.has('clipboard') == 1 and '+' or '"')
  end
  vim.fn.setreg(reg, h)
  vim.notify('narhash: ' .. h .. ' in register ' .. reg)
end

--- insert puts the SRI hash after the cursor.
function M.insert()
  local h = need_hash()
  if h then
    vim.api.nvim_put({ h }, 'c', true, true)
  end
end

function M.show()
  local i = M.info()
  local lines = {
    'narhash: ' .. (i.root or 'not started'),
    '  view ' .. i.view .. ', ' .. (i.source == 'daemon' and 'live from narhashd' or (i.note or 'starting')),
    '  hash ' .. (i.hash or 'none yet'),
  }
  if i.err then
    table.insert(lines, '  last error: ' .. i.err)
  end
  vim.notify(table.concat(lines, '\n'))
end

--- setup sets options (see :help narhash-setup) and starts.
function M.setup(opts)
  opts = opts or {}
  for k, v in pairs(opts) do
    if defaults[k] == nil and k ~= 'socket' and k ~= 'root' and k ~= 'register' then
      error('narhash.setup: unknown option ' .. k)
    end
    config[k] = v
  end
  if not vim.tbl_contains({ 'auto', 'git', 'dir' }, config.view) then
    error('narhash.setup: view must be auto, git or dir, not ' .. tostring(config.view))
  end
  if not codec.formats[config.format] then
    error('narhash.setup: format must be sri, nix32 or base16, not ' .. tostring(config.format))
  end
  state.caps = nil -- cmd may have changed
  M.start()
end

return M
