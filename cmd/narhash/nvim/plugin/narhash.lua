-- narhash: commands and autocommands. Nothing runs until the statusline
-- asks require('narhash').status(), a command is used, or setup{} is called.
if vim.g.loaded_narhash then
  return
end
vim.g.loaded_narhash = true

local function nh()
  return require('narhash')
end

vim.api.nvim_create_user_command('NarhashCopy', function(a)
  nh().copy(a.args)
end, { nargs = '?', desc = 'Copy the project NAR hash (SRI) to a register' })
vim.api.nvim_create_user_command('NarhashInsert', function()
  nh().insert()
end, { desc = 'Insert the project NAR hash (SRI) after the cursor' })
vim.api.nvim_create_user_command('NarhashStatus', function()
  nh().show()
end, { desc = "Show narhash's project, view, source and last error" })
vim.api.nvim_create_user_command('NarhashRestart', function(a)
  nh().start(a.args ~= '' and a.args or nil)
end, { nargs = '?', complete = 'dir', desc = 'Follow the NAR hash of DIR (default: the project) anew' })

local group = vim.api.nvim_create_augroup('narhash', { clear = true })
vim.api.nvim_create_autocmd('BufWritePost', {
  group = group,
  callback = function()
    if package.loaded['narhash'] then
      nh().on_write()
    end
  end,
})
vim.api.nvim_create_autocmd('DirChanged', {
  group = group,
  callback = function()
    if package.loaded['narhash'] then
      nh().on_dir_changed()
    end
  end,
})
vim.api.nvim_create_autocmd('VimLeavePre', {
  group = group,
  callback = function()
    if package.loaded['narhash'] then
      nh().stop()
    end
  end,
})
